"""Intensity normalisation per modality, to float32 roughly in [0, 1].

CT: a Hounsfield window (default -1000..2000 HU, clipped) mapped linearly to [0, 1]. MR, PET and unknown
modalities: robust percentiles (0.5 and 99.5 of the non-background voxels) mapped to [0, 1], clipped.
The encoder and every engine call this one function, so training and inference see the same scaling.
"""

from __future__ import annotations

import numpy as np

from multimodalgen.errors import UserInputError

CT_WINDOW_HU = (-1000.0, 2000.0)
PERCENTILES = (0.5, 99.5)
CT_MODALITIES = ("CT",)


def normalize(array: np.ndarray, modality: str | None = None, *, ct_window: tuple[float, float] = CT_WINDOW_HU,
              percentiles: tuple[float, float] = PERCENTILES, max_samples: int = 2_000_000) -> np.ndarray:
    """Normalise intensities of an `(I,J,K)` (or any-shape) array to float32 in [0, 1].

    Args:
        modality: "CT" uses the HU window; anything else uses robust percentiles.
        max_samples: percentiles are estimated on at most this many voxels (strided subsample) for speed.
    """
    arr = np.asarray(array, dtype=np.float32)
    if arr.size == 0:
        raise UserInputError("cannot normalise an empty array", expected="at least one voxel")
    if modality is not None and modality.upper() in CT_MODALITIES:
        low, high = ct_window
    else:
        low, high = robust_range(arr, percentiles, max_samples)
    if high <= low:
        return np.zeros_like(arr)
    return np.clip((arr - low) / (high - low), 0.0, 1.0).astype(np.float32, copy=False)


def robust_range(array: np.ndarray, percentiles: tuple[float, float] = PERCENTILES,
                 max_samples: int = 2_000_000) -> tuple[float, float]:
    """Low/high percentiles of the finite voxels above the image minimum (background excluded when it is large)."""
    flat = np.asarray(array, dtype=np.float32).ravel()
    if flat.size > max_samples:
        flat = flat[:: int(np.ceil(flat.size / max_samples))]
    flat = flat[np.isfinite(flat)]
    if flat.size == 0:
        return 0.0, 0.0
    minimum = float(flat.min())
    foreground = flat[flat > minimum]
    # An image that is mostly background (e.g. skull-stripped MR) would put the low percentile at 0 anyway;
    # using the foreground keeps the dynamic range for tissue.
    sample = foreground if foreground.size > 0.05 * flat.size else flat
    low, high = np.percentile(sample, percentiles)
    return float(min(low, minimum if sample is flat else low)), float(high)
