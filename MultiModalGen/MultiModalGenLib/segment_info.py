"""Segment names, colours and terminology as Slicer shows them (standard library + the backend's light
`multimodalgen.terminology`; no slicer import, so it is tested outside Slicer).

A *segment info* is the dict a label map carries in `Volume.metadata["segments"]` and the worker returns in a task's
``segments`` output: ``{"label": int, "name": str, "color": [r, g, b] in 0..1, "terminology": str}``, where
``terminology`` is Slicer's ``TerminologyEntry`` tag string (see `multimodalgen.terminology.LabelDefinition`).
"""

from __future__ import annotations

#: The vtkSegment tag Slicer reads the standard terminology from (`vtkSegment::GetTerminologyEntryTagName()`).
TERMINOLOGY_TAG = "TerminologyEntry"
#: Tag marking segments of a MultiModalGen preview segmentation (never on accepted segments).
PREVIEW_TAG = "MultiModalGen.Preview"
#: Suffix of preview segment names (so a preview is told apart from accepted segments in every list).
PREVIEW_NAME_SUFFIX = " (preview)"


def completeSegmentInfos(segments: list[dict] | None, labelValues) -> list[dict]:
    """One info per label value in `labelValues` (sorted), each with name, colour and terminology.

    Fields the model gave (`segments`, e.g. a task's ``segments`` output) win; missing names become
    ``"label N"``, missing colours and terminology come from `multimodalgen.terminology.definitions_for` (known
    tissue names get their SNOMED-CT entry and colour, other names a distinct default colour and no entry).
    """
    from multimodalgen.terminology import definitions_for

    given = {int(s["label"]): dict(s) for s in (segments or []) if isinstance(s, dict) and "label" in s}
    values = sorted({int(v) for v in labelValues if int(v) > 0} | set(given))
    if not values:
        return []
    names = [""] * (max(values) + 1)
    for value in values:
        names[value] = str(given.get(value, {}).get("name") or f"label {value}")
    definitions = {d.value: d for d in definitions_for(names)}
    out = []
    for value in values:
        info = given.get(value, {})
        definition = definitions[value]
        out.append({"label": value, "name": names[value],
                    "color": [float(c) for c in (info.get("color") or definition.color)],
                    "terminology": str(info.get("terminology") or definition.terminology_entry())})
    return out


def applySegmentInfo(segment, info: dict, preview: bool = False) -> None:
    """Set a `vtkSegment`'s name, colour and `TerminologyEntry` tag from a segment info; a preview segment gets
    the preview name suffix and tag."""
    name = str(info.get("name") or segment.GetName())
    if preview and not name.endswith(PREVIEW_NAME_SUFFIX):
        name += PREVIEW_NAME_SUFFIX
    segment.SetName(name)
    if info.get("color"):
        segment.SetColor(*[float(c) for c in info["color"]])
    if info.get("terminology"):
        segment.SetTag(TERMINOLOGY_TAG, str(info["terminology"]))
    if preview:
        segment.SetTag(PREVIEW_TAG, "1")


def segmentTag(segment, tag: str, mutable) -> str:
    """A `vtkSegment` tag value ('' when absent). `mutable` is `vtk.mutable` (Slicer's Python returns the value
    through it: ``segment.GetTag(tag, holder)``)."""
    holder = mutable("")
    return str(holder) if segment.GetTag(tag, holder) else ""


def segmentInfo(segment, label: int, mutable) -> dict:
    """The segment info of an existing `vtkSegment` (its name, colour and terminology) for label value `label`."""
    return {"label": int(label), "name": segment.GetName(), "color": [float(c) for c in segment.GetColor()],
            "terminology": segmentTag(segment, TERMINOLOGY_TAG, mutable)}


def baseName(name: str) -> str:
    """A preview segment's name without the preview suffix."""
    return name[:-len(PREVIEW_NAME_SUFFIX)] if name.endswith(PREVIEW_NAME_SUFFIX) else name
