"""Dice overlap of label maps: the one implementation every verb's evaluation uses.

Policy (one for `register --fixed-labels`, `fewshot --reference-label`, `segment --reference-label` and the batch
study):
- **The reference defines what is scored.** Each class the reference contains is scored; a class only the
  prediction has (e.g. skull and soft tissue against a grey/white/CSF reference) is listed under `unscored` instead
  of counting as Dice 0, since the reference says nothing about it. A reference class the prediction lacks scores 0.
- **Classes are paired by name when both maps name them and share at least one name** (segment names of a
  `.seg.nrrd`, of the `<name>.labels.json` beside a NIfTI/NRRD/MHA label map, or of a model's output, any spelling
  `terminology.canonical_name` knows: "GM" = "grey matter"), so a reference with other label values is scored
  correctly; otherwise (a plain label map, or Slicer's placeholder names `Segment_<n>`) by label value.
"""

from __future__ import annotations

import re

import numpy as np

from multimodalgen.volume import Volume

_PLACEHOLDER = re.compile(r"^segment_\d+$")


def dice_scores(predicted: Volume, reference: Volume, labels=None) -> dict:
    """Dice of each reference class and their mean.

    Returns ``{"dice_<reference value>": d, ..., "dice_mean": m, "matched_by": "name" | "value", "scored": [...]}``
    (Dice rounded to 6 digits; `scored`: the scored classes' names, or values as text, in key order), plus
    ``"unscored"`` (the predicted classes the reference lacks, by name or value) when there are any. `predicted` is resampled
    (nearest neighbour) onto `reference`'s grid when the grids differ. `labels`: the values to score, by value
    (default: the reference's classes, see the module policy). An empty reference scores nothing (no mean).
    """
    from multimodalgen.resample import resample_like
    from multimodalgen.volume import same_grid

    if not same_grid(predicted, reference, tolerance=1e-2):
        predicted = resample_like(predicted, reference, "nearest")
    reference_values = [int(v) for v in np.unique(reference.array) if v != 0]
    predicted_values = [int(v) for v in np.unique(predicted.array) if v != 0]
    reference_names, predicted_names = _names(reference), _names(predicted)
    by_name = (labels is None and bool(reference_names) and all(v in reference_names for v in reference_values)
               and bool(set(reference_names.values()) & set(predicted_names.values())))
    scores: dict = {}
    if by_name:
        for value in reference_values:
            name = reference_names[value]
            matches = [v for v, n in predicted_names.items() if n == name]
            scores[f"dice_{value}"] = _dice(np.isin(predicted.array, matches), reference.array == value)
        present = {reference_names[v] for v in reference_values}
        unscored = sorted({predicted_names.get(v, str(v)) for v in predicted_values} - present)
    else:
        scored = [int(v) for v in labels] if labels is not None else reference_values
        for value in scored:
            scores[f"dice_{value}"] = _dice(predicted.array == value, reference.array == value)
        unscored = [str(v) for v in predicted_values if v not in scored] if labels is None else []
    if scores:
        scores["dice_mean"] = round(float(np.mean(list(scores.values()))), 6)
    scores["matched_by"] = "name" if by_name else "value"
    scores["scored"] = [reference_names[int(k[5:])] if by_name else k[5:] for k in scores if k.startswith("dice_")
                        and k != "dice_mean"]
    if unscored:
        scores["unscored"] = unscored
    return scores


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    denominator = int(a.sum()) + int(b.sum())
    return round(2.0 * int((a & b).sum()) / denominator, 6) if denominator else 1.0


def _names(volume: Volume) -> dict[int, str]:
    """Label value -> canonical class name from `metadata["segments"]` (or `"labels"`); {} when the map has no
    names or only Slicer's `Segment_<n>` placeholders."""
    from multimodalgen.terminology import canonical_name

    meta = volume.metadata or {}
    if meta.get("segments"):
        named = {int(s["label"]): str(s.get("name", "")) for s in meta["segments"] if "label" in s}
    else:
        named = {int(k): str(v) for k, v in (meta.get("labels") or {}).items() if int(k) != 0}
    named = {v: canonical_name(n) for v, n in named.items() if n.strip()}
    if not named or all(_PLACEHOLDER.match(n) for n in named.values()):
        return {}
    return named


def dice_files(predicted, reference, labels=None) -> dict:
    """`dice_scores` of two label-map files."""
    from multimodalgen.io import read_label

    return dice_scores(read_label(predicted), read_label(reference), labels)
