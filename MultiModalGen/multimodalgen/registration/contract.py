"""The registration coordinate contract, stated once.

* A registration result is a map T from **fixed** physical points to **moving** physical points (the resampling
  direction used by ITK, ANTs and Slicer grid transforms): ``warped(x) = moving(T(x))``.
* T is stored as ``T(x) = A @ [x + u(x), 1]``: a 4x4 affine `A` (RAS mm -> RAS mm) applied after a dense
  displacement `u` (RAS mm, shape `(3, I, J, K)`) defined on a displacement grid (`field_shape`, `field_affine`,
  voxel -> RAS like every `Volume`). `u` is linearly interpolated between its voxel centres and is 0 outside its
  grid. Without a deformable stage `u` is None.
* Everything inside the backend is RAS. LPS appears only when exporting ITK files (`export.py`): there
  ``A_lps = F A F`` and ``u_lps = F u`` with ``F = diag(-1, -1, 1)``, and the ITK composite transform is
  [affine A, displacement u] (ITK applies the last-added transform first, so T(x) = A(x + u(x))).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

#: RAS <-> LPS flip of the first two world axes (its own inverse).
FLIP_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])

MODES = ("rigid", "affine", "deformable")
PRESETS = ("fast", "accurate")
INITS = ("moments", "centers", "none")


@dataclasses.dataclass
class RegistrationResult:
    """A fixed -> moving transform plus what the run measured.

    Attributes:
        affine: 4x4 float64, RAS mm -> RAS mm (applied last).
        displacement: `(3, I, J, K)` float32 RAS mm on the displacement grid, or None (affine only).
        field_shape, field_affine: the displacement grid (voxel -> RAS); for results of `register_volumes` the
            deformable stage's own nodes over the fixed field of view, or the fixed grid when that is as coarse.
        fixed_shape, fixed_affine: the fixed image's grid.
        report: JSON-serialisable dict (stages, timings, working grid, similarities, Jacobian statistics).
    """

    affine: np.ndarray
    displacement: np.ndarray | None
    field_shape: tuple[int, int, int]
    field_affine: np.ndarray
    fixed_shape: tuple[int, int, int]
    fixed_affine: np.ndarray
    report: dict[str, Any] = dataclasses.field(default_factory=dict)

    def transform_points(self, points_ras: np.ndarray) -> np.ndarray:
        """Map fixed-space points `(N, 3)` RAS mm to moving-space points `(N, 3)` RAS mm."""
        pts = np.atleast_2d(np.asarray(points_ras, dtype=np.float64))
        if self.displacement is not None:
            pts = pts + sample_field(self.displacement, self.field_affine, pts)
        return pts @ self.affine[:3, :3].T + self.affine[:3, 3]

    def dense_map(self) -> np.ndarray:
        """T(x) for every fixed voxel centre: `(3, I, J, K)` float64 RAS mm."""
        from multimodalgen.volume import grid_world_coordinates

        x = grid_world_coordinates(self.fixed_shape, self.fixed_affine)
        if self.displacement is not None:
            if tuple(self.field_shape) == tuple(self.fixed_shape) and np.allclose(self.field_affine,
                                                                                  self.fixed_affine, atol=1e-6):
                x = x + self.displacement
            else:
                x = x + _sample_field_torch(self.displacement, self.field_affine, x)
        return np.einsum("ab,bijk->aijk", self.affine[:3, :3], x) + self.affine[:3, 3, None, None, None]

    def total_displacement(self) -> np.ndarray:
        """T(x) - x on the fixed grid: `(3, I, J, K)` float64 RAS mm."""
        from multimodalgen.volume import grid_world_coordinates

        return self.dense_map() - grid_world_coordinates(self.fixed_shape, self.fixed_affine)


def sample_field(field: np.ndarray, field_affine: np.ndarray, points_ras: np.ndarray) -> np.ndarray:
    """Trilinear samples of a `(3, I, J, K)` field at RAS points `(N, 3)`: clamped within half a voxel of the
    border and 0 farther out (as ITK's DisplacementFieldTransform)."""
    from scipy.ndimage import map_coordinates

    idx = (np.asarray(points_ras, np.float64) - field_affine[:3, 3]) @ np.linalg.inv(field_affine[:3, :3]).T
    out = np.stack([map_coordinates(field[c].astype(np.float64), idx.T, order=1, mode="nearest")
                    for c in range(3)], axis=1)
    shape = np.asarray(field.shape[1:])
    outside = np.any((idx < -0.5) | (idx > shape - 0.5), axis=1)
    out[outside] = 0.0
    return out


def _sample_field_torch(field: np.ndarray, field_affine: np.ndarray, points: np.ndarray) -> np.ndarray:
    """`sample_field` for a grid of points `(3, I, J, K)` (torch, in slabs): `(3, I, J, K)` float64."""
    import torch
    import torch.nn.functional as F

    src = torch.from_numpy(np.ascontiguousarray(field, dtype=np.float32))[None]
    inv = np.linalg.inv(field_affine)
    shape = np.asarray(field.shape[1:], np.float64)
    out = np.zeros(points.shape, np.float64)
    with torch.no_grad():
        for start in range(0, points.shape[1], 16):
            pts = np.moveaxis(points[:, start:start + 16], 0, -1)
            idx = pts @ inv[:3, :3].T + inv[:3, 3]
            norm = 2.0 * idx / np.maximum(shape - 1, 1) - 1.0
            grid = torch.from_numpy(norm[..., ::-1].astype(np.float32).copy())[None]
            vals = F.grid_sample(src, grid, mode="bilinear", padding_mode="border", align_corners=True)[0].numpy()
            outside = np.any((idx < -0.5) | (idx > shape - 0.5), axis=-1)
            vals[:, outside] = 0.0
            out[:, start:start + 16] = vals
    return out


def affine_ras_to_lps(affine_ras: np.ndarray) -> np.ndarray:
    """A world-to-world 4x4 affine in RAS -> the same map in LPS coordinates."""
    return FLIP_LPS @ np.asarray(affine_ras, np.float64) @ FLIP_LPS


def affine_lps_to_ras(affine_lps: np.ndarray) -> np.ndarray:
    """A world-to-world 4x4 affine in LPS -> the same map in RAS coordinates."""
    return FLIP_LPS @ np.asarray(affine_lps, np.float64) @ FLIP_LPS
