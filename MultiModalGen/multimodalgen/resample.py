"""Resampling, reorientation and cropping of `Volume`s (all in RAS mm, see `multimodalgen.volume`).

Outside-the-grid convention is ITK's (so results match SimpleITK and Slicer): a target point whose continuous
source index lies within [-0.5, n - 0.5) is inside (edge voxels are clamped there); anything else gets `fill`.

Resampling maps each target voxel centre to world space through the target affine and back into the source grid
through the source affine's inverse; images are sampled linearly, label maps with nearest neighbour. The work is
done in slabs along the target's first axis so that memory stays bounded for large grids.
"""

from __future__ import annotations

import math

import numpy as np

from multimodalgen.errors import UserInputError
from multimodalgen.io.memory import check_fits_in_memory
from multimodalgen.volume import Volume, crop_affine, direction_from_affine, orientation_code

ORDERS = ("linear", "nearest")

#: Target voxels processed per slab of the oblique path (bounds its temporary grids to ~100 MB).
_SLAB_VOXELS = 2_000_000


def index_map(source_affine: np.ndarray, target_affine: np.ndarray) -> np.ndarray:
    """4x4 matrix taking target voxel indices to (fractional) source voxel indices."""
    return np.linalg.inv(np.asarray(source_affine, np.float64)) @ np.asarray(target_affine, np.float64)


def resample_array(array: np.ndarray, source_affine: np.ndarray, target_shape: tuple[int, int, int],
                   target_affine: np.ndarray, order: str = "linear", fill: float = 0.0) -> np.ndarray:
    """Resample `array` `(I,J,K)` or `(C,I,J,K)` from its grid onto a target grid.

    Args:
        order: "linear" (images, float32 output) or "nearest" (labels, dtype kept).
        fill: value outside the source field of view.

    Returns:
        Array `(*target_shape)` or `(C, *target_shape)`.

    Grids whose axes are parallel (the index map is diagonal, e.g. isotropic resampling, crops, zooms) take an
    exact separable path (one 1D interpolation per axis); oblique grids use trilinear `grid_sample` in slabs.
    """
    if order not in ORDERS:
        raise UserInputError("unknown interpolation order", expected=" or ".join(ORDERS), got=repr(order))
    target_shape = tuple(int(s) for s in target_shape)
    channels = 1 if array.ndim == 3 else array.shape[0]
    check_fits_in_memory(float(np.prod(target_shape)) * channels * 4 * 3, "the resampled volume")
    if order == "nearest" and np.issubdtype(array.dtype, np.integer) and array.size and np.abs(array).max() > 2 ** 24:
        raise UserInputError("label values too large for resampling", expected="labels < 16,777,216")
    mapping = index_map(source_affine, target_affine)
    stack = array.reshape((channels,) + tuple(array.shape[-3:]))
    linear = mapping[:3, :3]
    if np.abs(linear - np.diag(np.diag(linear))).max() <= 1e-9 * np.abs(linear).max():
        out = np.stack([_resample_separable(c, mapping, target_shape, order, fill) for c in stack])
    else:
        out = _resample_grid_sample(stack, mapping, target_shape, order, fill)
    if order == "nearest":
        out = np.rint(out).astype(array.dtype, copy=False) if np.issubdtype(array.dtype, np.integer) else out
    return out if array.ndim == 4 else out[0]


def _axis_weights(n_target: int, scale: float, offset: float, n_source: int, order: str):
    """Source indices and weights of a 1D resampling `x_src = scale * i + offset` (ITK border convention)."""
    x = scale * np.arange(n_target, dtype=np.float64) + offset
    inside = (x >= -0.5) & (x < n_source - 0.5)
    if order == "nearest":
        index = np.clip(np.floor(x + 0.5).astype(np.int64), 0, n_source - 1)
        return index, index, np.zeros(n_target, np.float32), inside
    x = np.clip(x, 0.0, n_source - 1.0)
    low = np.floor(x).astype(np.int64)
    high = np.minimum(low + 1, n_source - 1)
    return low, high, (x - low).astype(np.float32), inside


def _resample_separable(channel: np.ndarray, mapping: np.ndarray, target_shape: tuple[int, int, int],
                        order: str, fill: float) -> np.ndarray:
    """Axis-parallel resampling of one `(I,J,K)` channel: three 1D passes, float32 (labels: dtype kept)."""
    keep_dtype = order == "nearest"
    data = channel if keep_dtype else channel.astype(np.float32, copy=False)
    inside_all = None
    for axis in range(3):
        low, high, weight, inside = _axis_weights(target_shape[axis], mapping[axis, axis], mapping[axis, 3],
                                                  channel.shape[axis], order)
        if order == "nearest":
            data = np.take(data, low, axis=axis)
        else:
            shape = [1, 1, 1]
            shape[axis] = -1
            w = weight.reshape(shape)
            lo = np.take(data, low, axis=axis)
            data = lo + w * (np.take(data, high, axis=axis) - lo)
        shape = [1, 1, 1]
        shape[axis] = -1
        mask = inside.reshape(shape)
        inside_all = mask if inside_all is None else inside_all & mask
    if not np.all(inside_all):
        data = np.where(inside_all, data, np.asarray(fill, dtype=data.dtype))
    return np.ascontiguousarray(data)


def _resample_grid_sample(stack: np.ndarray, mapping: np.ndarray, target_shape: tuple[int, int, int],
                          order: str, fill: float) -> np.ndarray:
    """General (oblique) resampling of `(C,I,J,K)` with torch `grid_sample`, in slabs along the target's i axis."""
    import torch

    src_shape = stack.shape[-3:]
    src = torch.from_numpy(np.ascontiguousarray(stack, dtype=np.float32))[None]  # (1, C, I, J, K)
    out = np.empty((stack.shape[0],) + target_shape, dtype=np.float32)
    slab = max(1, _SLAB_VOXELS // max(1, target_shape[1] * target_shape[2]))
    m = torch.as_tensor(mapping, dtype=torch.float32)
    sizes = torch.tensor(src_shape, dtype=torch.float32)
    j = torch.arange(target_shape[1], dtype=torch.float32)[None, :, None, None] * m[:3, 1]
    k = torch.arange(target_shape[2], dtype=torch.float32)[None, None, :, None] * m[:3, 2]
    jk = j + k + m[:3, 3]  # (1, J, K, 3) source index contribution of j, k and the translation
    mode = "bilinear" if order == "linear" else "nearest"
    for start in range(0, target_shape[0], slab):
        stop = min(target_shape[0], start + slab)
        i = torch.arange(start, stop, dtype=torch.float32)[:, None, None, None] * m[:3, 0]
        src_idx = i + jk  # (n, J, K, 3) continuous source indices
        grid = ((2.0 * src_idx + 1.0) / sizes - 1.0).flip(-1)[None]  # align_corners=False; (x=k, y=j, z=i)
        sampled = torch.nn.functional.grid_sample(src, grid, mode=mode, padding_mode="border",
                                                  align_corners=False)[0]
        # ITK convention: inside when the continuous index lies in [-0.5, n - 0.5) on every axis.
        inside = ((src_idx >= -0.5) & (src_idx < sizes - 0.5)).all(dim=-1)
        out[:, start:stop] = torch.where(inside, sampled, torch.tensor(fill, dtype=sampled.dtype)).numpy()
    return out


def resample_to_grid(volume: Volume, target_shape: tuple[int, int, int], target_affine: np.ndarray,
                     order: str = "linear", fill: float = 0.0) -> Volume:
    """Resample a Volume onto the grid `(target_shape, target_affine)`; see `resample_array`."""
    array = resample_array(volume.array, volume.affine, target_shape, target_affine, order, fill)
    meta = dict(volume.metadata)
    meta["resampled_from"] = {"shape": list(volume.shape3d), "spacing_mm": volume.spacing.round(6).tolist()}
    return Volume(array, np.asarray(target_affine, np.float64), volume.modality, meta)


def resample_like(volume: Volume, reference: Volume, order: str = "linear", fill: float = 0.0) -> Volume:
    """Resample `volume` onto `reference`'s grid."""
    return resample_to_grid(volume, reference.shape3d, reference.affine, order, fill)


def isotropic_grid(volume: Volume, spacing: float) -> tuple[tuple[int, int, int], np.ndarray]:
    """A grid with the same orientation and field of view as `volume` and isotropic `spacing` mm.

    The field of view (voxel edges) is kept: the new first voxel centre sits half a new voxel inside the old corner.
    """
    if not spacing > 0:
        raise UserInputError("invalid spacing", expected="a spacing > 0 mm", got=str(spacing))
    old_spacing = volume.spacing
    extent = old_spacing * np.asarray(volume.shape3d)
    shape = tuple(max(1, int(math.ceil(e / spacing - 1e-6))) for e in extent)
    direction = direction_from_affine(volume.affine)
    affine = np.eye(4)
    affine[:3, :3] = direction * spacing
    corner = volume.affine[:3, :3] @ np.full(3, -0.5) + volume.affine[:3, 3]
    affine[:3, 3] = corner + direction @ np.full(3, 0.5 * spacing)
    return shape, affine  # type: ignore[return-value]


def resample_isotropic(volume: Volume, spacing: float = 1.0, order: str = "linear") -> Volume:
    """Resample to isotropic `spacing` mm over the same field of view and orientation."""
    shape, affine = isotropic_grid(volume, spacing)
    return resample_to_grid(volume, shape, affine, order)


def reorient(volume: Volume, code: str = "RAS") -> Volume:
    """Exact reorientation (axis permutation and flips, no interpolation) so the axes point along `code`."""
    import nibabel.orientations as nio

    code = code.upper()
    current = nio.io_orientation(volume.affine)
    try:
        wanted = nio.axcodes2ornt(tuple(code))
    except Exception as exc:
        raise UserInputError("invalid orientation code", expected="three letters from R/L, A/P, S/I", got=code) from exc
    transform = nio.ornt_transform(current, wanted)
    spatial = volume.array if volume.array.ndim == 3 else np.moveaxis(volume.array, 0, -1)
    array = nio.apply_orientation(spatial, transform)
    if volume.array.ndim == 4:
        array = np.moveaxis(array, -1, 0)
    affine = volume.affine @ nio.inv_ornt_aff(transform, volume.shape3d)
    out = Volume(np.ascontiguousarray(array), affine, volume.modality, volume.metadata)
    if orientation_code(out.affine) != code:
        raise RuntimeError(f"internal error: reorientation to {code} gave {orientation_code(out.affine)}")
    return out


def bounding_box(mask: np.ndarray, margin: int | tuple[int, int, int] = 0) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Voxel box `(start, stop)` (stop exclusive) of the non-zero voxels of an `(I,J,K)` mask, grown by `margin`."""
    nonzero = np.nonzero(mask)
    if len(nonzero[0]) == 0:
        raise UserInputError("the mask is empty", expected="at least one non-zero voxel", fix="check the mask")
    margins = np.broadcast_to(np.asarray(margin, dtype=int), (3,))
    start = tuple(max(0, int(n.min()) - m) for n, m in zip(nonzero, margins))
    stop = tuple(min(s, int(n.max()) + 1 + m) for n, m, s in zip(nonzero, margins, mask.shape))
    return start, stop


def crop_to_box(volume: Volume, start: tuple[int, int, int], stop: tuple[int, int, int]) -> Volume:
    """Crop to voxel box `[start, stop)` (clipped to the grid); the affine is shifted so world positions are kept."""
    start = tuple(max(0, int(s)) for s in start)
    stop = tuple(min(n, int(e)) for e, n in zip(stop, volume.shape3d))
    if any(e <= s for s, e in zip(start, stop)):
        raise UserInputError("the crop box is empty or outside the volume", expected=f"a box inside {volume.shape3d}",
                             got=f"start {start}, stop {stop}")
    slices = tuple(slice(s, e) for s, e in zip(start, stop))
    array = volume.array[slices] if volume.array.ndim == 3 else volume.array[(slice(None),) + slices]
    return Volume(np.ascontiguousarray(array), crop_affine(volume.affine, start), volume.modality, volume.metadata)
