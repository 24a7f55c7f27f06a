"""Dice overlap of label maps: the one implementation every verb's evaluation uses."""

from __future__ import annotations

import numpy as np

from multimodalgen.volume import Volume


def dice_scores(predicted: Volume, reference: Volume, labels=None) -> dict[str, float]:
    """Dice of each label and their mean: ``{"dice_<label>": d, ..., "dice_mean": m}`` (rounded to 6 digits).

    `predicted` is resampled (nearest neighbour) onto `reference`'s grid when the grids differ. `labels`: the
    values to score (default: every non-zero value of either map). A label absent from both scores 1.0.
    """
    from multimodalgen.resample import resample_like
    from multimodalgen.volume import same_grid

    if not same_grid(predicted, reference, tolerance=1e-2):
        predicted = resample_like(predicted, reference, "nearest")
    if labels is None:
        labels = sorted((set(np.unique(reference.array).tolist()) | set(np.unique(predicted.array).tolist())) - {0})
    scores: dict[str, float] = {}
    for label in labels:
        a, b = predicted.array == label, reference.array == label
        denominator = int(a.sum()) + int(b.sum())
        scores[f"dice_{int(label)}"] = round(2.0 * int((a & b).sum()) / denominator, 6) if denominator else 1.0
    if scores:
        scores["dice_mean"] = round(float(np.mean(list(scores.values()))), 6)
    return scores


def dice_files(predicted, reference, labels=None) -> dict[str, float]:
    """`dice_scores` of two label-map files."""
    from multimodalgen.io import read_label

    return dice_scores(read_label(predicted), read_label(reference), labels)
