"""Fast files between the effect and the worker: Slicer arrays written and read without reordering axes.

Slicer's `arrayFromVolume` / `arrayFromSegmentBinaryLabelmap` arrays are `(K, J, I)`, which is exactly the array
order of SimpleITK's `GetImageFromArray` / `GetArrayFromImage`: writing them through SimpleITK directly skips the
two `(K, J, I) <-> (I, J, K)` copies the general bridge makes (about 0.2 s each at 256^3), and uncompressed NIfTI
skips gzip (about 1 s per 256^3 label map each way). The file is an ordinary NIfTI on the node's grid (voxel ->
RAS `ijkToRas`, written as LPS by `multimodalgen.io.sitk_bridge`, the one place LPS meets RAS), so the worker
reads it like any other. Used per stroke by the few-shot effect; the panel's actions keep the general path.
"""

from __future__ import annotations

import os
import pathlib

import numpy as np

from multimodalgen.errors import UserInputError

GEOMETRY_TOLERANCE_MM = 1e-3


def writeSlicerArray(arrayKJI: np.ndarray, ijkToRas: np.ndarray, path: str | os.PathLike,
                     compress: bool = False) -> pathlib.Path:
    """Write a `(K, J, I)` array on the grid `ijkToRas` (4x4 voxel (i, j, k) -> RAS mm) to `path` (.nii or .nii.gz;
    written to a temporary name, then renamed)."""
    import SimpleITK as sitk

    from multimodalgen.io.sitk_bridge import affine_lps_from_ras

    array = np.asarray(arrayKJI)
    if array.ndim != 3:
        raise UserInputError("cannot write the array", expected="a (K, J, I) array", got=f"shape {array.shape}")
    lps = affine_lps_from_ras(ijkToRas)
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    image = sitk.GetImageFromArray(np.ascontiguousarray(array))
    image.SetSpacing([float(s) for s in spacing])
    image.SetOrigin([float(v) for v in lps[:3, 3]])
    image.SetDirection([float(v) for v in (lps[:3, :3] / spacing[None, :]).ravel()])
    path = pathlib.Path(path)
    tmp = path.with_name(".part." + path.name)
    sitk.WriteImage(image, str(tmp), useCompression=compress)
    os.replace(tmp, path)
    return path


def readSlicerLabel(path: str | os.PathLike, ijkToRas: np.ndarray, shapeKJI: tuple[int, int, int]) -> np.ndarray:
    """Read a label map written on the grid (`ijkToRas`, `shapeKJI`) as a `(K, J, I)` integer array; refuses a
    file on another grid (never resampled silently)."""
    import SimpleITK as sitk

    from multimodalgen.io.sitk_bridge import affine_ras_from_lps, ijk_to_lps_from_sitk

    image = sitk.ReadImage(str(path))
    array = sitk.GetArrayFromImage(image)
    affine = affine_ras_from_lps(ijk_to_lps_from_sitk(image))
    if tuple(array.shape) != tuple(shapeKJI) or not np.allclose(affine, ijkToRas, atol=GEOMETRY_TOLERANCE_MM):
        raise UserInputError("the few-shot result is not on the source volume's grid", expected=f"shape {shapeKJI}",
                             got=f"shape {tuple(array.shape)}", fix="report this: results must come back on the "
                             "input grid")
    if not np.issubdtype(array.dtype, np.integer):
        raise UserInputError("the few-shot result is not a label map", expected="integer voxels", got=str(array.dtype))
    return array
