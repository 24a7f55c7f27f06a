"""Applying and exporting a `RegistrationResult`: warped images/labels, ITK transform, displacement, Jacobian.

ITK files are LPS (the only place this package converts registration results to LPS; see `contract.py`):
`transform.h5` is an ITK composite transform [AffineTransform A_lps, DisplacementFieldTransform u_lps on the
fixed grid]; ITK applies the last-added transform first, so it maps a fixed LPS point x to A_lps(x + u_lps(x)),
the moving LPS point. `displacement.nii.gz` holds the total displacement T(x) - x (mm, LPS components) on the
fixed grid.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from multimodalgen.registration.contract import FLIP_LPS, RegistrationResult, affine_ras_to_lps
from multimodalgen.volume import Volume


def warp_volume(result: RegistrationResult, moving: Volume, order: str = "linear", dense_map=None) -> Volume:
    """Resample `moving` into the fixed grid through T: ``warped(x) = moving(T(x))``.

    Args:
        order: "linear" (images, float32) or "nearest" (labels, dtype kept).
        dense_map: optional precomputed `result.dense_map()` `(3, I, J, K)` RAS mm.
    """
    import torch

    from multimodalgen.registration.sampling import apply_matrix, sample

    tmap = result.dense_map() if dense_map is None else dense_map
    to_idx = np.linalg.inv(moving.affine)
    src = torch.from_numpy(np.ascontiguousarray(moving.array, dtype=np.float32))[None, None]
    out = np.empty(result.fixed_shape, np.float32)
    mode = "bilinear" if order == "linear" else "nearest"
    with torch.no_grad():
        for start in range(0, result.fixed_shape[0], 32):
            stop = min(result.fixed_shape[0], start + 32)
            pts = torch.from_numpy(np.ascontiguousarray(np.moveaxis(tmap[:, start:stop], 0, -1)))
            idx = apply_matrix(to_idx, pts).float()
            out[start:stop] = sample(src, idx, mode=mode, padding="zeros")[0, 0].numpy()
    if order == "nearest":
        out = np.rint(out).astype(moving.array.dtype)
    return Volume(out, result.fixed_affine.copy(), moving.modality, {"warped_from": moving.metadata.get("source")})


def jacobian_determinant(total_disp: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """det(d T / d x) of x -> x + u(x) on a grid: `u` `(3, I, J, K)` mm (any world frame), voxel -> world `affine`.

    Central differences inside, one-sided at the border (as numpy.gradient and the benchmark); float64 result.
    """
    import torch

    u = torch.from_numpy(np.ascontiguousarray(total_disp, dtype=np.float32))

    def grad(x, dim):
        n = x.shape[dim]
        if n < 2:
            return torch.zeros_like(x)
        g = torch.empty_like(x)
        g.narrow(dim, 1, n - 2).copy_((x.narrow(dim, 2, n - 2) - x.narrow(dim, 0, n - 2)) / 2) if n > 2 else None
        g.narrow(dim, 0, 1).copy_(x.narrow(dim, 1, 1) - x.narrow(dim, 0, 1))
        g.narrow(dim, n - 1, 1).copy_(x.narrow(dim, n - 1, 1) - x.narrow(dim, n - 2, 1))
        return g

    inv = torch.as_tensor(np.linalg.inv(np.asarray(affine, np.float64)[:3, :3]), dtype=torch.float32)
    d_idx = [grad(u, dim) for dim in (1, 2, 3)]  # d u / d index_d, each (3, I, J, K)
    jac = [[sum(d_idx[d][c] * inv[d, e] for d in range(3)) + (1.0 if c == e else 0.0) for e in range(3)]
           for c in range(3)]
    det = (jac[0][0] * (jac[1][1] * jac[2][2] - jac[1][2] * jac[2][1])
           - jac[0][1] * (jac[1][0] * jac[2][2] - jac[1][2] * jac[2][0])
           + jac[0][2] * (jac[1][0] * jac[2][1] - jac[1][1] * jac[2][0]))
    return det.numpy().astype(np.float64)


def jacobian_stats(result: RegistrationResult, total_disp: np.ndarray | None = None) -> dict:
    """Non-positive fraction, min, max and mean of det(J) of T over the fixed grid (affine part included)."""
    det_a = float(np.linalg.det(result.affine[:3, :3]))
    if result.displacement is None:
        return {"nonpositive_fraction": float(det_a <= 0), "min": det_a, "max": det_a, "mean": det_a}
    disp = result.total_displacement() if total_disp is None else total_disp
    det = jacobian_determinant(disp, result.fixed_affine)
    return {"nonpositive_fraction": float(np.mean(det <= 0)), "min": float(det.min()), "max": float(det.max()),
            "mean": float(det.mean())}


def to_sitk_transform(result: RegistrationResult):
    """The result as a SimpleITK transform in LPS (composite affine + displacement field, or affine only)."""
    import SimpleITK as sitk

    from multimodalgen.io.sitk_bridge import volume_to_sitk

    a_lps = affine_ras_to_lps(result.affine)
    affine = sitk.AffineTransform(3)
    affine.SetMatrix([float(v) for v in a_lps[:3, :3].ravel()])
    affine.SetTranslation([float(v) for v in a_lps[:3, 3]])
    if result.displacement is None:
        return affine
    u_lps = np.einsum("ab,bijk->aijk", FLIP_LPS[:3, :3], result.displacement.astype(np.float64))
    image = volume_to_sitk(Volume(u_lps, result.field_affine))
    image = sitk.Cast(image, sitk.sitkVectorFloat64)
    field = sitk.DisplacementFieldTransform(image)
    return sitk.CompositeTransform([affine, field])


def write_transform(result: RegistrationResult, path: str | Path) -> Path:
    """Write `transform.h5` (or .tfm/.txt) atomically; readable by SimpleITK.ReadTransform, ANTs and Slicer."""
    import SimpleITK as sitk

    from multimodalgen.io.writers import atomic_path

    with atomic_path(path) as tmp:
        sitk.WriteTransform(to_sitk_transform(result), str(tmp))
    return Path(path)


def write_inverse_transform(result: RegistrationResult, path: str | Path) -> Path:
    """Write T^-1 (moving LPS points -> fixed LPS points) atomically: the inverse affine, then the displacement
    field inverted by ITK's fixed-point iteration on the field's grid."""
    import SimpleITK as sitk

    from multimodalgen.io.writers import atomic_path
    from multimodalgen.registration.apply import invert_transform

    with atomic_path(path) as tmp:
        sitk.WriteTransform(invert_transform(to_sitk_transform(result)), str(tmp))
    return Path(path)


def displacement_volume(result: RegistrationResult, total_disp: np.ndarray | None = None) -> Volume:
    """T(x) - x on the fixed grid as a `(3, I, J, K)` float32 Volume with LPS mm components (ITK convention)."""
    disp = result.total_displacement() if total_disp is None else total_disp
    u_lps = np.einsum("ab,bijk->aijk", FLIP_LPS[:3, :3], disp).astype(np.float32)
    return Volume(u_lps, result.fixed_affine.copy(), "FEATURES",
                  {"description": "fixed->moving displacement, mm, LPS components"})
