"""Torch sampling helpers shared by the registration stages.

Conventions: volumes are torch tensors `(1, C, I, J, K)`; "index" coordinates are voxel indices `(i, j, k)`;
a 4x4 matrix maps homogeneous points of one space to another. `grid_sample` wants normalised `(x, y, z)` =
`(k, j, i)` coordinates; we use ``align_corners=True`` so index 0 -> -1 and index n-1 -> +1.
"""

from __future__ import annotations

import numpy as np


def index_grid(shape, device=None, dtype=None):
    """Voxel indices of a grid: tensor `(I, J, K, 3)` holding `(i, j, k)`."""
    import torch

    axes = [torch.arange(int(n), device=device, dtype=dtype or torch.float32) for n in shape]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1)


def apply_matrix(matrix, points):
    """Apply a 4x4 (numpy or torch) matrix to points `(..., 3)` (torch); returns `(..., 3)`."""
    import torch

    m = torch.as_tensor(np.asarray(matrix) if not isinstance(matrix, torch.Tensor) else matrix,
                        dtype=points.dtype, device=points.device)
    return points @ m[:3, :3].T + m[:3, 3]


def normalise_index(index, shape):
    """Voxel indices `(..., 3)` of a grid of `shape` -> grid_sample coordinates `(..., 3)` (x=k, y=j, z=i)."""
    import torch

    size = torch.as_tensor([float(max(n - 1, 1)) for n in shape], dtype=index.dtype, device=index.device)
    return (2.0 * index / size - 1.0).flip(-1)


def sample(volume, index, mode: str = "bilinear", padding: str = "border"):
    """Sample a `(1, C, I, J, K)` tensor at fractional voxel indices `(..., 3)`.

    Returns `(1, C, *index.shape[:-1])` for a `(P, Q, R, 3)` index, or `(C, N)` for an `(N, 3)` index.
    """
    import torch.nn.functional as F

    shape = volume.shape[2:]
    grid = normalise_index(index, shape)
    if index.ndim == 2:
        out = F.grid_sample(volume, grid.view(1, 1, 1, -1, 3), mode=mode, padding_mode=padding, align_corners=True)
        return out.view(volume.shape[1], -1)
    return F.grid_sample(volume, grid[None], mode=mode, padding_mode=padding, align_corners=True)


def _normalising_matrix(shape) -> np.ndarray:
    """4x4: voxel index (i, j, k) of a grid of `shape` -> grid_sample coordinates (x=k, y=j, z=i), align_corners."""
    norm = np.zeros((4, 4))
    for row, axis in enumerate((2, 1, 0)):
        norm[row, axis] = 2.0 / float(max(int(shape[axis]) - 1, 1))
        norm[row, 3] = -1.0
    norm[3, 3] = 1.0
    return norm


def affine_points(shape, matrix, device=None, dtype=None):
    """``matrix @ (i, j, k, 1)`` for every voxel of a grid of `shape`: `(I, J, K, 3)`, built by broadcasting three
    outer terms (cheaper than `index_grid` followed by a matrix product)."""
    import torch

    m = torch.as_tensor(np.asarray(matrix, np.float64), dtype=torch.float64)
    terms = []
    for axis in range(3):
        n = int(shape[axis])
        view = [1, 1, 1, 3]
        view[axis] = n
        coord = torch.arange(n, dtype=torch.float64)[:, None] * m[:3, axis][None]
        terms.append(coord.view(view).to(device=device, dtype=dtype or torch.float32))
    offset = m[:3, 3].to(device=device, dtype=dtype or torch.float32)
    return (terms[0] + offset) + terms[1] + terms[2]


def sample_affine(volume, matrix, shape, mode: str = "bilinear", padding: str = "border", disp=None):
    """Sample a `(1, C, i, j, k)` tensor at ``matrix @ (v + disp(v))`` for every voxel v of a grid of `shape`.

    Args:
        matrix: 4x4 (numpy) from the output grid's voxel indices to `volume`'s voxel indices.
        disp: optional `(1, 3, I, J, K)` displacement in output-grid voxels.
    Returns:
        `(1, C, *shape)`: the same values as `sample(volume, apply_matrix(matrix, index_grid(shape) + disp))`,
        with the grid built directly in grid_sample's normalised coordinates (no index grid, no flip copy).
    """
    import torch
    import torch.nn.functional as F

    to_norm = _normalising_matrix(volume.shape[2:]) @ np.asarray(matrix, np.float64)
    grid = affine_points(shape, to_norm, volume.device, volume.dtype)
    if disp is not None:
        lin = torch.as_tensor(to_norm[:3, :3], dtype=disp.dtype, device=disp.device)
        grid = grid + torch.einsum("ab,bijk->ijka", lin, disp[0]).to(grid.dtype)
    return F.grid_sample(volume, grid[None], mode=mode, padding_mode=padding, align_corners=True)


def inside_fraction(index, shape) -> float:
    """Fraction of the `(..., 3)` indices that fall inside a grid of `shape` (used to detect missing overlap)."""
    import torch

    size = torch.as_tensor([float(n - 1) for n in shape], dtype=index.dtype, device=index.device)
    inside = ((index >= -0.5) & (index <= size + 0.5)).all(dim=-1)
    return float(inside.float().mean())


def box3(x):
    """Centred 3-tap box filter along i, j, k of `(N, C, I, J, K)` with replicate padding.

    Same values as `features.mind.box_filter(x, 3)`, built from concatenated edge slices instead of `F.pad`:
    autograd's backward of replicate padding is slow on CPU, and the deformable stage back-propagates through
    this filter at every Adam step.
    """
    import torch

    for dim in (2, 3, 4):
        n = x.shape[dim]
        if n < 2:
            continue
        xp = torch.cat([x.narrow(dim, 0, 1), x, x.narrow(dim, n - 1, 1)], dim)
        x = (xp.narrow(dim, 0, n) + xp.narrow(dim, 1, n) + xp.narrow(dim, 2, n)) / 3.0
    return x


def smooth_field(field, passes: int = 3, kernel: int = 3):
    """Box-filter a `(1, 3, I, J, K)` field `passes` times (replicate padding): a cheap Gaussian-like smoother.

    A symmetric linear map (each pass is, and the per-axis passes commute), so it is its own adjoint: the gradient
    of a loss through it is the smoothed gradient. `box3` (autograd-friendly) when gradients are recorded,
    else the in-place `box_filter`.
    """
    import torch

    from multimodalgen.features.mind import box_filter

    recording = torch.is_grad_enabled() and field.requires_grad
    for _ in range(passes):
        field = box3(field) if kernel == 3 and recording else box_filter(field, kernel)
    return field


def upsample_field(field, shape):
    """Trilinear resize of a `(1, 3, i, j, k)` field to `shape` (values unchanged: caller rescales units)."""
    import torch.nn.functional as F

    return F.interpolate(field, size=tuple(int(s) for s in shape), mode="trilinear", align_corners=True)
