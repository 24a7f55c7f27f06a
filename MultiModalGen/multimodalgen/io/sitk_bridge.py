"""SimpleITK image <-> `Volume`: the only place where LPS (ITK) and RAS (backend) meet for images.

ITK: physical LPS point = origin + direction @ diag(spacing) @ (i, j, k); `GetArrayFromImage` is `(K, J, I)`
(`(K, J, I, C)` for vector images). Backend: `Volume.array` is `(I, J, K)` / `(C, I, J, K)`, affine -> RAS.
"""

from __future__ import annotations

import numpy as np

from multimodalgen.errors import UserInputError
from multimodalgen.volume import Volume

#: Diagonal flip between LPS and RAS (its own inverse).
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def ijk_to_lps_from_sitk(image) -> np.ndarray:
    """4x4 voxel -> LPS mm matrix of a 3D SimpleITK image."""
    direction = np.asarray(image.GetDirection(), dtype=np.float64).reshape(3, 3)
    spacing = np.asarray(image.GetSpacing(), dtype=np.float64)
    out = np.eye(4)
    out[:3, :3] = direction * spacing[None, :]
    out[:3, 3] = image.GetOrigin()
    return out


def affine_ras_from_lps(ijk_to_lps: np.ndarray) -> np.ndarray:
    """voxel->LPS 4x4 to voxel->RAS 4x4."""
    return LPS_TO_RAS @ np.asarray(ijk_to_lps, dtype=np.float64)


def affine_lps_from_ras(affine_ras: np.ndarray) -> np.ndarray:
    """voxel->RAS 4x4 to voxel->LPS 4x4."""
    return LPS_TO_RAS @ np.asarray(affine_ras, dtype=np.float64)


def sitk_to_volume(image, modality: str | None = None, metadata: dict | None = None) -> Volume:
    """Convert a 3D SimpleITK image (scalar or vector) to a `Volume` (array copied, axes reordered to I,J,K)."""
    import SimpleITK as sitk

    if image.GetDimension() != 3:
        raise UserInputError(
            "only 3D images are supported",
            expected="a 3D volume", got=f"a {image.GetDimension()}D image of size {list(image.GetSize())}",
            fix="for a 4D series extract one 3D volume first (e.g. Slicer's sequence browser); 2D images cannot be used")
    array = sitk.GetArrayFromImage(image)
    if image.GetNumberOfComponentsPerPixel() > 1:
        array = np.ascontiguousarray(np.transpose(array, (3, 2, 1, 0)))  # (K,J,I,C) -> (C,I,J,K)
    else:
        array = np.ascontiguousarray(np.transpose(array, (2, 1, 0)))  # (K,J,I) -> (I,J,K)
    affine = affine_ras_from_lps(ijk_to_lps_from_sitk(image))
    return Volume(array, affine, modality, metadata or {})


def volume_to_sitk(volume: Volume):
    """Convert a `Volume` to a SimpleITK image with LPS geometry (vector image when it has channels)."""
    import SimpleITK as sitk

    array = volume.array
    if array.dtype == np.bool_:
        array = array.astype(np.uint8)
    if array.dtype == np.float16:
        array = array.astype(np.float32)
    if array.ndim == 4:
        image = sitk.GetImageFromArray(np.ascontiguousarray(np.transpose(array, (3, 2, 1, 0))), isVector=True)
    else:
        image = sitk.GetImageFromArray(np.ascontiguousarray(np.transpose(array, (2, 1, 0))))
    lps = affine_lps_from_ras(volume.affine)
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    image.SetSpacing([float(s) for s in spacing])
    image.SetDirection([float(v) for v in (lps[:3, :3] / spacing[None, :]).ravel()])
    image.SetOrigin([float(v) for v in lps[:3, 3]])
    return image
