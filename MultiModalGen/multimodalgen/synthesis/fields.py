"""Deterministic torch building blocks of the engine: smooth random fields, blur, resampling, warping.

Volumes are `(I, J, K)` tensors (or `(C, I, J, K)`), voxel axis order. Randomness only comes from an explicit
`torch.Generator`, so a seeded generator on a given device always reproduces the same field.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def make_generator(seed: int, device: torch.device | str) -> torch.Generator:
    """A torch generator on `device` seeded with `seed` (the only randomness source of the renderers)."""
    gen = torch.Generator(device=torch.device(device))
    gen.manual_seed(int(seed) % (2**63 - 1))
    return gen


def normalized_grid(shape: tuple[int, int, int], device: torch.device | str) -> torch.Tensor:
    """Voxel-centre coordinates `(I, J, K, 3)` in normalised units: the longest axis spans [-1, 1], isotropic."""
    half = (max(shape) - 1) / 2.0 or 1.0
    axes = [(torch.arange(n, device=device, dtype=torch.float32) - (n - 1) / 2.0) / half for n in shape]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1)


def smooth_noise(gen: torch.Generator, channels: int, grid: int | tuple[int, int, int],
                 shape: tuple[int, int, int], device: torch.device | str) -> torch.Tensor:
    """`(channels, I, J, K)` smooth zero-mean unit-std-ish noise: N(0,1) on a coarse grid, trilinearly upsampled.

    `grid` is the coarse grid size (int -> same on every axis; at least 2).
    """
    g = (grid, grid, grid) if isinstance(grid, int) else tuple(grid)
    g = tuple(max(2, int(v)) for v in g)
    coarse = torch.randn((1, channels) + g, generator=gen, device=device)
    return F.interpolate(coarse, size=tuple(shape), mode="trilinear", align_corners=True)[0]


def multiscale_noise(gen: torch.Generator, channels: int, shape: tuple[int, int, int], scales: tuple[int, ...],
                     stds: tuple[float, ...], device: torch.device | str) -> torch.Tensor:
    """Sum over scales s of `std_s * smooth_noise` on a grid of spacing s voxels (Perlin-like). `(C, I, J, K)`."""
    out = torch.zeros((channels,) + tuple(shape), device=device)
    for s, std in zip(scales, stds):
        if std <= 0:
            continue
        grid = tuple(max(2, int(math.ceil(n / s)) + 1) for n in shape)
        out += std * smooth_noise(gen, channels, grid, shape, device)
    return out


def gaussian_blur(volume: torch.Tensor, sigma: tuple[float, float, float], truncate: float | None = None
                  ) -> torch.Tensor:
    """Separable Gaussian blur of a `(I, J, K)` volume with per-axis sigma in voxels (0 = no blur on that axis).

    Borders are replicate-padded so the mean intensity near the edge is kept. Kernel radius: ceil(3 sigma) (at least
    1; sigma <= 0.05 is no blur) by default; with `truncate`, scipy.ndimage.gaussian_filter's int(truncate * sigma +
    0.5) (radius 0 is no blur), so `gaussian_blur(x, s, truncate=3.0)` is `gaussian_filter(x, s, mode="nearest")`.
    """
    x = volume[None, None]
    for axis, s in enumerate(sigma):
        s = float(s)
        radius = int(truncate * s + 0.5) if truncate is not None else max(1, int(math.ceil(3.0 * s)))
        if s <= (0.0 if truncate is not None else 0.05) or radius < 1:
            continue
        t = torch.arange(-radius, radius + 1, device=volume.device, dtype=volume.dtype)
        kernel = torch.exp(-0.5 * (t / s) ** 2)
        kernel = kernel / kernel.sum()
        ksize = [1, 1, 1]
        ksize[axis] = kernel.numel()
        pad = [0, 0, 0, 0, 0, 0]
        pad[2 * (2 - axis)] = radius
        pad[2 * (2 - axis) + 1] = radius
        x = F.conv3d(F.pad(x, pad, mode="replicate"), kernel.view(1, 1, *ksize))
    return x[0, 0]


def lowres_acquisition(volume: torch.Tensor, factors: tuple[float, float, float]) -> torch.Tensor:
    """Simulate a low-resolution (possibly anisotropic) acquisition: box-average down by `factors`, trilinear back.

    The box average models partial volume within a thick voxel; the output has the input's shape.
    """
    shape = tuple(volume.shape)
    low = tuple(max(2, int(round(n / f))) for n, f in zip(shape, factors))
    if low == shape:
        return volume
    x = F.adaptive_avg_pool3d(volume[None, None], low)
    return F.interpolate(x, size=shape, mode="trilinear", align_corners=False)[0, 0]


def warp_labels(labels: torch.Tensor, displacement: torch.Tensor) -> torch.Tensor:
    """Nearest-neighbour warp of an `(I, J, K)` integer label map by a `(3, I, J, K)` displacement in voxels.

    out[x] = labels[x + displacement[:, x]] (border: nearest voxel).
    """
    shape = labels.shape
    idx = [torch.arange(n, device=labels.device, dtype=torch.float32) for n in shape]
    grid = torch.stack(torch.meshgrid(*idx, indexing="ij"), dim=0) + displacement
    for axis, n in enumerate(shape):
        grid[axis] = grid[axis].round().clamp(0, n - 1)
    g = grid.long()
    return labels[g[0], g[1], g[2]]


def max_filter(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """Binary dilation of a bool `(I, J, K)` mask by a cube of half-width `radius` voxels."""
    x = mask[None, None].float()
    return F.max_pool3d(x, 2 * radius + 1, stride=1, padding=radius)[0, 0] > 0.5


def min_filter(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """Binary erosion of a bool `(I, J, K)` mask by a cube of half-width `radius` voxels (outside counts as 0)."""
    x = (~mask)[None, None].float()
    x = F.pad(x, [radius] * 6, value=1.0)
    return F.max_pool3d(x, 2 * radius + 1, stride=1)[0, 0] < 0.5
