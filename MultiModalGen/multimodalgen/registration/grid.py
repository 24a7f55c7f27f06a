"""Working grids and image preparation for registration.

The optimisation never runs on the input grids directly: the fixed image is resampled onto an explicit
**working grid** (fixed orientation, isotropic spacing, cropped to the fixed foreground or mask plus a margin)
and the moving image onto an isotropic grid of the same spacing in its own orientation and field of view.
Images finer than the working spacing are Gaussian-smoothed first (anti-aliasing). The chosen grids and the
reasons are returned so that they can be reported. All geometry is RAS mm.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from multimodalgen.errors import UserInputError
from multimodalgen.volume import Volume, direction_from_affine

#: Default working spacing (mm) and the voxel budget of the working grid (bounds memory and time).
DEFAULT_SPACING_MM = 2.0
MAX_WORKING_VOXELS = 2_400_000
MARGIN_MM = 12.0


@dataclasses.dataclass
class WorkingGrid:
    """An isotropic grid: `shape` `(I, J, K)`, `affine` voxel -> RAS, `spacing` mm, `reason` (for the report)."""

    shape: tuple[int, int, int]
    affine: np.ndarray
    spacing: float
    reason: str

    def describe(self) -> dict:
        return {"shape": list(self.shape), "spacing_mm": round(self.spacing, 4),
                "origin_ras_mm": np.round(self.affine[:3, 3], 3).tolist(), "reason": self.reason}


def foreground_mask(array: np.ndarray) -> np.ndarray:
    """Rough foreground of a normalised image: above 10 % of its robust maximum (bool `(I, J, K)`)."""
    arr = np.asarray(array, np.float32)
    hi = float(np.percentile(arr.ravel()[:: max(1, arr.size // 500_000)], 99.0))
    return arr > 0.1 * hi if hi > 0 else np.ones(arr.shape, bool)


def _box_world_corners(volume: Volume, mask: np.ndarray | None) -> np.ndarray:
    """RAS corners `(8, 3)` of the voxel box holding `mask` (or the whole grid)."""
    if mask is not None and mask.any():
        idx = np.nonzero(mask)
        lo = np.array([i.min() for i in idx], float) - 0.5
        hi = np.array([i.max() for i in idx], float) + 0.5
    else:
        lo = np.full(3, -0.5)
        hi = np.asarray(volume.shape3d, float) - 0.5
    corners = np.array([[a, b, c] for a in (lo[0], hi[0]) for b in (lo[1], hi[1]) for c in (lo[2], hi[2])])
    return corners @ volume.affine[:3, :3].T + volume.affine[:3, 3]


def choose_working_grid(volume: Volume, mask: np.ndarray | None = None, spacing: float = DEFAULT_SPACING_MM,
                        margin_mm: float = MARGIN_MM, max_voxels: int = MAX_WORKING_VOXELS,
                        crop: bool = True, direction: np.ndarray | None = None) -> WorkingGrid:
    """An isotropic grid covering `mask` (or the whole volume) plus `margin_mm`.

    Its axes follow `direction` (3x3, columns = axis unit vectors in RAS; default: the volume's own). The spacing
    is `spacing` mm, raised when the grid would exceed `max_voxels` (memory/time bound).
    """
    direction = direction_from_affine(volume.affine) if direction is None else np.asarray(direction, np.float64)
    use_mask = mask if (crop and mask is not None and mask.any()) else None
    corners = _box_world_corners(volume, use_mask)
    local = corners @ direction  # coordinates along the grid's axes
    lo, hi = local.min(0), local.max(0)
    full = _box_world_corners(volume, None) @ direction
    lo = np.maximum(lo - margin_mm, full.min(0))
    hi = np.minimum(hi + margin_mm, full.max(0))
    extent = hi - lo
    reasons = [f"isotropic {spacing:g} mm in the fixed image's orientation"]
    reasons.append("cropped to the fixed foreground/mask + %g mm" % margin_mm if use_mask is not None
                   else "whole field of view")
    step = float(spacing)
    finest = float(volume.spacing.min())
    if finest > step * 1.25:
        reasons.append(f"(input voxels {finest:.2f} mm are coarser than the working spacing)")
    while np.prod(np.ceil(extent / step)) > max_voxels:
        step *= 1.1
    if step > spacing * 1.0001:
        reasons.append(f"spacing raised to {step:.2f} mm to keep the grid under {max_voxels:,} voxels")
    shape = tuple(max(4, int(math.ceil(e / step - 1e-6))) for e in extent)
    centre_local = 0.5 * (lo + hi)
    first_local = centre_local - 0.5 * step * (np.asarray(shape) - 1)
    affine = np.eye(4)
    affine[:3, :3] = direction * step
    affine[:3, 3] = direction @ first_local
    return WorkingGrid(shape, affine, step, "; ".join(reasons))  # type: ignore[arg-type]


def moving_grid(volume: Volume, spacing: float, direction: np.ndarray,
                max_voxels: int = 2 * MAX_WORKING_VOXELS) -> WorkingGrid:
    """An isotropic grid over the moving image's whole field of view with the fixed working grid's axes.

    The axes must match the fixed grid's: MIND-SSC (and the encoder) features are tied to the voxel axes.
    """
    grid = choose_working_grid(volume, None, spacing, margin_mm=0.0, max_voxels=max_voxels, crop=False,
                               direction=direction)
    grid.reason = f"isotropic {grid.spacing:g} mm over the moving field of view, axes of the fixed working grid"
    return grid


def looks_like_ct(volume: Volume) -> bool:
    """True for modality "CT", or an unlabelled image whose values span Hounsfield air and bone."""
    if volume.modality:
        return volume.modality.upper() == "CT"
    arr = volume.array
    sample = arr.ravel()[:: max(1, arr.size // 200_000)]
    return bool(np.percentile(sample, 1) < -500 and np.percentile(sample, 99.5) > 300)


def prepare_image(volume: Volume, grid: WorkingGrid) -> np.ndarray:
    """Normalise (CT: HU window, else robust percentiles), anti-alias and resample onto `grid`.

    Returns a float32 `(I, J, K)` array on `grid` with intensities in [0, 1].
    """
    from multimodalgen.intensity import normalize
    from multimodalgen.resample import resample_array

    if volume.array.ndim != 3:
        raise UserInputError("registration needs scalar images", expected="a 3D scalar image (I, J, K)",
                             got=f"an image with {volume.n_channels} channels", fix="extract one channel first")
    is_ct = looks_like_ct(volume)
    arr = normalize(volume.array, "CT" if is_ct else volume.modality,
                    **({"ct_window": (-200.0, 1200.0)} if is_ct else {}))
    sigma = [0.4 * grid.spacing / s if s < grid.spacing * 0.9 else 0.0 for s in volume.spacing]
    if any(s > 0 for s in sigma):
        arr = gaussian_smooth(arr, sigma, truncate=3.0)
    return resample_array(arr, volume.affine, grid.shape, grid.affine, "linear", fill=0.0).astype(np.float32)


def gaussian_smooth(array: np.ndarray, sigma, truncate: float = 3.0) -> np.ndarray:
    """scipy.ndimage.gaussian_filter(array, sigma, mode="nearest", truncate=truncate) of an `(I, J, K)` array (sigma
    per axis in voxels, 0 = none) through `synthesis.fields.gaussian_blur` (scipy costs ~0.2 s to import).
    Returns float32."""
    import torch

    from multimodalgen.synthesis.fields import gaussian_blur

    with torch.no_grad():
        x = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
        return gaussian_blur(x, tuple(float(s) for s in sigma), truncate=truncate).numpy()


def dilate(mask: np.ndarray, iterations: int = 1) -> np.ndarray:
    """Binary dilation of a bool `(I, J, K)` mask by the 6-neighbour cross, `iterations` times, outside = False
    (scipy.ndimage.binary_dilation's default structuring element, without importing scipy)."""
    out = np.asarray(mask, bool)
    for _ in range(int(iterations)):
        grown = out.copy()
        for axis in range(3):
            n = out.shape[axis]
            if n < 2:
                continue
            lo = [slice(None)] * 3
            hi = [slice(None)] * 3
            lo[axis], hi[axis] = slice(0, n - 1), slice(1, n)
            grown[tuple(lo)] |= out[tuple(hi)]
            grown[tuple(hi)] |= out[tuple(lo)]
        out = grown
    return out


def resample_mask(mask: Volume, grid: WorkingGrid) -> np.ndarray:
    """A mask Volume on `grid` (linear then > 0.5): bool `(I, J, K)`."""
    from multimodalgen.resample import resample_array

    arr = (np.asarray(mask.array) > 0).astype(np.float32)
    return resample_array(arr, mask.affine, grid.shape, grid.affine, "linear", fill=0.0) > 0.5
