"""Tiny analytic phantoms for the registration tests (generated, never real data)."""

from __future__ import annotations

import numpy as np
import pytest

_BLOBS = [  # centre (mm), sigma (mm), weight
    ((-14.0, 10.0, 6.0), (6.0, 4.0, 5.0), 0.8),
    ((12.0, -8.0, -4.0), (4.0, 7.0, 4.0), 0.6),
    ((4.0, 16.0, -10.0), (5.0, 5.0, 3.0), -0.5),
    ((-8.0, -16.0, 10.0), (3.5, 3.5, 6.0), 0.7),
    ((16.0, 12.0, 12.0), (4.0, 3.0, 3.0), 0.9),
    ((0.0, 0.0, 0.0), (8.0, 5.0, 4.0), -0.4),
]


def phantom(points: np.ndarray, head: float = 0.5, blobs: float = 1.0) -> np.ndarray:
    """A smooth 'head' at RAS points `(..., 3)` mm: a soft ellipsoid (weight `head`) with blobs inside (weight
    `blobs`; a negative weight inverts their contrast, like another MR weighting). Background is 0."""
    p = np.asarray(points, np.float64)
    r = np.sqrt(((p / np.array([30.0, 34.0, 26.0])) ** 2).sum(-1))
    inside = 1.0 / (1.0 + np.exp((r - 1.0) / 0.04))
    value = head * inside
    for c, s, w in _BLOBS:
        value = value + blobs * w * inside * np.exp(-0.5 * (((p - np.array(c)) / np.array(s)) ** 2).sum(-1))
    return value


def grid_affine(shape, spacing, rotation=None) -> np.ndarray:
    """voxel -> RAS affine of a grid centred on the origin."""
    direction = np.eye(3) if rotation is None else rotation
    affine = np.eye(4)
    affine[:3, :3] = direction * spacing
    affine[:3, 3] = -direction @ ((np.asarray(shape) - 1) / 2.0 * spacing)
    return affine


def euler(ax, ay, az) -> np.ndarray:
    ax, ay, az = np.deg2rad([ax, ay, az])
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def render(shape, affine, transform_inv=None, head: float = 0.5, blobs: float = 1.0):
    """Volume of the phantom on a grid; moving images are rendered at T^-1(y) (other contrast: other weights)."""
    from multimodalgen.volume import Volume, grid_world_coordinates

    pts = np.moveaxis(grid_world_coordinates(tuple(shape), affine), 0, -1)
    if transform_inv is not None:
        pts = pts @ transform_inv[:3, :3].T + transform_inv[:3, 3]
    values = phantom(pts, head, blobs)
    return Volume((100.0 * values).astype(np.float32), affine, None)


@pytest.fixture
def affine_pair():
    """(fixed, moving, T_true): moving is the phantom moved by a known affine T (fixed -> moving), other contrast."""
    t_true = np.eye(4)
    t_true[:3, :3] = euler(5.0, -4.0, 6.0) @ np.diag([1.04, 0.97, 1.02])
    t_true[:3, 3] = [3.0, -4.0, 2.5]
    fixed = render((36, 40, 32), grid_affine((36, 40, 32), 2.0))
    m_aff = grid_affine((34, 38, 30), 2.4, euler(0, 0, 90))  # other spacing and orientation
    moving = render((34, 38, 30), m_aff, np.linalg.inv(t_true), head=1.0, blobs=-0.8)  # other contrast
    return fixed, moving, t_true


def interior_points(n: int = 300, seed: int = 0) -> np.ndarray:
    """Random RAS points inside the phantom's head (mm)."""
    rng = np.random.default_rng(seed)
    pts = rng.uniform(-1, 1, (4 * n, 3)) * np.array([26.0, 30.0, 22.0])
    inside = ((pts / np.array([26.0, 30.0, 22.0])) ** 2).sum(1) < 1
    return pts[inside][:n]


def uptake_pair():
    """(fixed, moving, T_true): a T1-like phantom (2 mm) and a smooth 'uptake' image of the same anatomy moved by a
    known affine T (fixed -> moving): only the blobs take up tracer (no head/scalp signal), blurred to 8 mm FWHM and
    stored on 4 mm voxels, like a PET/SPECT image against an MR."""
    from multimodalgen.registration.grid import gaussian_smooth
    from multimodalgen.volume import Volume

    t_true = np.eye(4)
    t_true[:3, :3] = euler(6.0, -5.0, 8.0) @ np.diag([1.03, 0.97, 1.02])
    t_true[:3, 3] = [4.0, -5.0, 3.0]
    fixed = render((36, 40, 32), grid_affine((36, 40, 32), 2.0))
    fine = render((36, 40, 32), grid_affine((36, 40, 32), 2.0), np.linalg.inv(t_true), head=0.0, blobs=1.0)
    uptake = gaussian_smooth(fine.array, [8.0 / 2.355 / 2.0] * 3)[::2, ::2, ::2]  # 8 mm FWHM, then 4 mm voxels
    moving = Volume(np.ascontiguousarray(uptake), grid_affine((18, 20, 16), 4.0), None)
    return fixed, moving, t_true
