"""Tiny generated test volumes shared by the test areas (never real data)."""

from __future__ import annotations

import numpy as np


def oblique_affine(spacing=(1.2, 0.9, 2.5), angles_deg=(10.0, -7.0, 25.0), origin=(-30.0, 12.5, 40.0),
                   flip_i: bool = False) -> np.ndarray:
    """A voxel->RAS affine with rotation, anisotropic spacing and optionally a flipped first axis."""
    ax, ay, az = np.deg2rad(angles_deg)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    direction = rz @ ry @ rx
    if flip_i:
        direction[:, 0] *= -1
    affine = np.eye(4)
    affine[:3, :3] = direction * np.asarray(spacing)[None, :]
    affine[:3, 3] = origin
    return affine


def blob_image(shape=(20, 18, 12), seed: int = 0) -> np.ndarray:
    """A smooth float32 test image with structure (sum of Gaussian blobs + a gradient), values ~0..1000."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.arange(s, dtype=np.float32) for s in shape], indexing="ij"))
    img = 50.0 * grid[0] / shape[0]
    for _ in range(5):
        c = rng.uniform(0, 1, 3) * np.asarray(shape)
        r = rng.uniform(2, 5)
        img += rng.uniform(200, 800) * np.exp(-((grid - c[:, None, None, None]) ** 2).sum(0) / (2 * r * r))
    return img.astype(np.float32)
