"""From fused per-label log-odds to the final label map.

1. optional Gaussian smoothing of the log-odds (mm, per-axis sigma from the voxel size);
2. decision: the label with the highest log-odds when it is > 0, else background;
3. connectivity: per label, keep only the 3D components (26-neighbourhood) that touch the painting of that label
   (stray blobs of similar intensity elsewhere are dropped); holes enclosed in a component are filled;
4. exactness: on known voxels (the annotated slices) the output equals the painting, always.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

_STRUCTURE_26 = np.ones((3, 3, 3), bool)


def decide(logits: np.ndarray) -> np.ndarray:
    """`(L, ...)` log-odds (background = 0) -> class index map (0 = background, 1..L) as int16."""
    best = np.argmax(logits, axis=0)
    return np.where(np.take_along_axis(logits, best[None], 0)[0] > 0, best + 1, 0).astype(np.int16)


def keep_connected_to(mask: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """Components of boolean `mask` (26-connected) that contain a voxel of boolean `seeds`."""
    labelled, n = ndi.label(mask, structure=_STRUCTURE_26)
    if n == 0:
        return mask
    touching = np.unique(labelled[seeds & mask])
    touching = touching[touching > 0]
    return np.isin(labelled, touching)


def finalise_labels(logits: np.ndarray, classes: np.ndarray, labels: tuple[int, ...], spacing, *,
                    smooth_mm: float = 1.0, keep_connected: bool = True) -> np.ndarray:
    """Label map from `(L, I, J, K)` fused log-odds, with the painting written back exactly.

    Args:
        logits: per-label log-odds on the box (background has log-odds 0).
        classes: `(I, J, K)` known classes on the box: -1 unknown, 0 background, c = `labels[c - 1]`.
        labels: label values, in class order.
        spacing: voxel size (mm) along i, j, k.

    Returns:
        `(I, J, K)` uint8 (or int32 for labels > 255) label values.
    """
    if smooth_mm > 0:
        sigma = smooth_mm / np.asarray(spacing, np.float64)
        sigma = np.where(sigma < 0.3, 0.0, sigma)  # no smoothing across thick slices
        logits = np.stack([ndi.gaussian_filter(lg, sigma, mode="nearest") for lg in logits])
    known = classes >= 0
    # the painting decides the known voxels before connectivity, so components connect through it
    decided = decide(logits)
    decided[known] = classes[known]
    out = np.zeros(classes.shape, np.uint8 if max(labels) < 256 else np.int32)
    for c, value in enumerate(labels, start=1):
        mask = decided == c
        if keep_connected:
            mask = keep_connected_to(mask, classes == c)
        mask = _fill_holes(mask, decided, c)
        out[mask] = value
    out[known] = np.where(classes[known] > 0, np.asarray(labels, out.dtype)[np.maximum(classes[known] - 1, 0)], 0)
    return out


def _fill_holes(mask: np.ndarray, decided: np.ndarray, c: int) -> np.ndarray:
    """Fill background holes enclosed by the label's mask (not holes holding another label)."""
    if not mask.any():
        return mask
    filled = ndi.binary_fill_holes(mask)
    return mask | (filled & (decided == 0))
