"""Export round trips: transform.h5 read by SimpleITK reproduces our warps; displacement.nii.gz; Jacobian."""

from __future__ import annotations

import numpy as np
import pytest
from registration_helpers import euler, grid_affine, render


def _result_with_field(shape=(20, 22, 18), spacing=2.0):
    """A RegistrationResult with a known affine and a smooth displacement (no registration run)."""
    from multimodalgen.registration.contract import RegistrationResult
    from multimodalgen.volume import grid_world_coordinates

    affine = np.eye(4)
    affine[:3, :3] = euler(4.0, -3.0, 5.0) @ np.diag([1.03, 0.98, 1.0])
    affine[:3, 3] = [2.0, -1.5, 3.0]
    grid = grid_affine(shape, spacing, euler(0, 0, 90))
    x = grid_world_coordinates(shape, grid)
    disp = np.stack([2.0 * np.sin(x[1] / 9.0), 1.5 * np.cos(x[2] / 7.0), 1.0 * np.sin(x[0] / 8.0)]).astype(np.float32)
    return RegistrationResult(affine, disp, shape, grid, shape, grid, {})


def _to_itk_point(p_ras):
    return (-float(p_ras[0]), -float(p_ras[1]), float(p_ras[2]))


def test_itk_transform_maps_points_like_the_result(tmp_path):
    import SimpleITK as sitk

    from multimodalgen.registration.export import write_transform

    result = _result_with_field()
    path = write_transform(result, tmp_path / "transform.h5")
    tx = sitk.ReadTransform(str(path))
    rng = np.random.default_rng(1)
    pts = rng.uniform(-14, 14, (50, 3))  # inside the field's grid
    ours = result.transform_points(pts)
    from multimodalgen.registration.outputs import FIELD_QUANTUM_MM

    for p, q in zip(pts, ours):
        itk = np.asarray(tx.TransformPoint(_to_itk_point(p)))
        # the stored field is rounded to FIELD_QUANTUM_MM (1/1024 mm) per component before compression
        np.testing.assert_allclose(itk, _to_itk_point(q), atol=FIELD_QUANTUM_MM)


def test_sitk_resampling_with_transform_h5_equals_our_warped_output(tmp_path):
    import SimpleITK as sitk

    from multimodalgen.io import read_volume, write_volume
    from multimodalgen.io.sitk_bridge import volume_to_sitk
    from multimodalgen.registration.export import warp_volume, write_transform

    result = _result_with_field()
    moving = render((24, 26, 20), grid_affine((24, 26, 20), 2.5))
    ours = warp_volume(result, moving, "linear")
    write_volume(moving, tmp_path / "moving.nii.gz")
    write_transform(result, tmp_path / "transform.h5")
    tx = sitk.ReadTransform(str(tmp_path / "transform.h5"))
    fixed_ref = volume_to_sitk(ours)
    theirs = sitk.Resample(sitk.ReadImage(str(tmp_path / "moving.nii.gz"), sitk.sitkFloat32), fixed_ref, tx,
                           sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    write_volume(ours, tmp_path / "ours.nii.gz")
    back = read_volume(tmp_path / "ours.nii.gz")
    theirs_arr = np.transpose(sitk.GetArrayFromImage(theirs), (2, 1, 0))
    inner = (slice(1, -1),) * 3  # ITK and torch differ only within half a voxel of the moving image border
    assert np.abs(theirs_arr - ours.array)[inner].max() < 1e-2 * np.abs(ours.array).max()
    np.testing.assert_allclose(back.array, ours.array, atol=1e-4)


def test_displacement_volume_is_total_displacement_in_lps(tmp_path):
    import SimpleITK as sitk

    from multimodalgen.io import write_volume
    from multimodalgen.registration.export import displacement_volume, write_transform
    from multimodalgen.volume import grid_world_coordinates

    result = _result_with_field()
    write_volume(displacement_volume(result), tmp_path / "displacement.nii.gz")
    write_transform(result, tmp_path / "transform.h5")
    field = sitk.ReadImage(str(tmp_path / "displacement.nii.gz"), sitk.sitkVectorFloat64)
    dense = sitk.TransformToDisplacementField(sitk.ReadTransform(str(tmp_path / "transform.h5")),
                                              sitk.sitkVectorFloat64, field.GetSize(), field.GetOrigin(),
                                              field.GetSpacing(), field.GetDirection())
    np.testing.assert_allclose(sitk.GetArrayFromImage(field), sitk.GetArrayFromImage(dense), atol=1e-3)
    x = grid_world_coordinates(result.fixed_shape, result.fixed_affine)
    np.testing.assert_allclose(result.total_displacement() + x, result.dense_map(), atol=1e-9)


def test_affine_only_result_exports_a_plain_affine(tmp_path):
    import SimpleITK as sitk

    from multimodalgen.registration.contract import RegistrationResult
    from multimodalgen.registration.export import write_transform

    a = np.eye(4)
    a[:3, 3] = [1.0, 2.0, 3.0]  # RAS translation -> LPS (-1, -2, 3)
    result = RegistrationResult(a, None, (4, 4, 4), np.eye(4), (4, 4, 4), np.eye(4), {})
    tx = sitk.ReadTransform(str(write_transform(result, tmp_path / "t.h5")))
    np.testing.assert_allclose(tx.TransformPoint((0.0, 0.0, 0.0)), (-1.0, -2.0, 3.0), atol=1e-9)


def test_jacobian_of_known_fields():
    from multimodalgen.registration.export import jacobian_determinant
    from multimodalgen.volume import grid_world_coordinates

    shape, aff = (12, 10, 8), grid_affine((12, 10, 8), 1.5, euler(10, 0, 30))
    x = grid_world_coordinates(shape, aff)
    scale = np.diag([0.1, -0.05, 0.2])  # u = S x  ->  det(I + S) everywhere
    det = jacobian_determinant(np.einsum("ab,bijk->aijk", scale, x), aff)
    np.testing.assert_allclose(det, np.linalg.det(np.eye(3) + scale), rtol=1e-5)
    fold = np.zeros((3,) + shape)
    fold[0] = -3.0 * x[0]  # x -> -2x along R: folded everywhere
    assert np.all(jacobian_determinant(fold, aff) < 0)


@pytest.mark.parametrize("mode", ["deformable"])
def test_register_files_outputs_agree_with_transform(tmp_path, affine_pair, mode):
    """End to end on a tiny pair: every output exists, and SimpleITK + transform.h5 reproduces warped_labels."""
    import json

    import SimpleITK as sitk

    from multimodalgen.io import write_label, write_volume
    from multimodalgen.registration import register_files
    from multimodalgen.volume import Volume

    fixed, moving, _ = affine_pair
    labels = Volume((moving.array > 60).astype(np.uint8) + (moving.array > 110), moving.affine, "LABEL")
    write_volume(fixed, tmp_path / "f.nii.gz")
    write_volume(moving, tmp_path / "m.nii.gz")
    write_label(labels, tmp_path / "ml.nii.gz")
    out = tmp_path / "out"
    report = register_files(tmp_path / "f.nii.gz", tmp_path / "m.nii.gz", out, moving_labels=tmp_path / "ml.nii.gz",
                            mode=mode, outputs="all")
    for name in ("transform.h5", "inverse_transform.h5", "displacement.nii.gz", "warped.nii.gz",
                 "warped_labels.nii.gz", "report.json", "overlay.png"):
        assert (out / name).is_file(), name
    assert not [p for p in out.iterdir() if p.name.startswith(".")]
    assert json.loads((out / "report.json").read_text())["working_grid"]["reason"]
    assert report.metrics["jacobian"]["nonpositive_fraction"] < 0.005
    fixed_img = sitk.ReadImage(str(tmp_path / "f.nii.gz"))
    ml = sitk.ReadImage(str(tmp_path / "ml.nii.gz"))
    theirs = sitk.GetArrayFromImage(sitk.Resample(ml, fixed_img, sitk.ReadTransform(str(out / "transform.h5")),
                                                  sitk.sitkNearestNeighbor, 0, ml.GetPixelID()))
    ours = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "warped_labels.nii.gz")))
    assert np.mean(theirs == ours) > 0.995


def test_coarse_field_grid_round_trip(tmp_path):
    """A displacement stored on a grid coarser than the fixed grid: ITK (transform.h5) and our warp agree."""
    import SimpleITK as sitk

    from multimodalgen.registration.contract import RegistrationResult
    from multimodalgen.registration.export import write_transform
    from multimodalgen.volume import grid_world_coordinates

    fine_shape, fine = (30, 32, 26), grid_affine((30, 32, 26), 1.0)
    coarse_shape, coarse = (16, 17, 14), grid_affine((16, 17, 14), 2.0)
    x = grid_world_coordinates(coarse_shape, coarse)
    disp = np.stack([1.5 * np.sin(x[1] / 6.0), np.cos(x[2] / 5.0), 0.8 * np.sin(x[0] / 7.0)]).astype(np.float32)
    affine = np.eye(4)
    affine[:3, 3] = [1.0, 0.5, -0.5]
    result = RegistrationResult(affine, disp, coarse_shape, coarse, fine_shape, fine, {})
    tx = sitk.ReadTransform(str(write_transform(result, tmp_path / "t.h5")))
    dense = result.dense_map()
    pts = grid_world_coordinates(fine_shape, fine)
    for idx in [(0, 0, 0), (29, 31, 25), (15, 16, 13), (3, 20, 9)]:
        p = pts[(slice(None),) + idx]
        itk = np.asarray(tx.TransformPoint((-p[0], -p[1], p[2])))
        np.testing.assert_allclose(itk, (-dense[(0,) + idx], -dense[(1,) + idx], dense[(2,) + idx]), atol=1e-3)


def test_warp_volume_slab_path_equals_dense_map_path():
    """warp_volume builds its sampling positions in torch (affine + displacement grid, zero beyond half a voxel
    outside that grid); the result equals resampling through `dense_map()` (oblique grids, partial field cover)."""
    from multimodalgen.registration.contract import RegistrationResult
    from multimodalgen.registration.export import warp_volume
    from multimodalgen.volume import Volume, grid_world_coordinates

    rng = np.random.default_rng(0)

    def oblique(spacing, angle, origin):
        a = np.eye(4)
        c, s = np.cos(angle), np.sin(angle)
        a[:3, :3] = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]) @ np.diag(spacing)
        a[:3, 3] = origin
        return a

    fixed_shape, fixed_affine = (30, 28, 26), oblique((1.0, 1.2, 1.1), 0.1, (-15, -14, -12))
    moving = Volume(rng.random((25, 27, 24)).astype(np.float32), oblique((1.3, 1.1, 1.2), -0.2, (-16, -15, -13)))
    labels = Volume(rng.integers(0, 5, (25, 27, 24)).astype(np.uint8), moving.affine)
    affine = np.eye(4)
    affine[:3, 3] = [1.0, 0.5, -0.5]
    affine[:3, :3] += 0.02 * rng.standard_normal((3, 3))
    for field_shape, field_affine in [((12, 11, 10), oblique((3.0, 3.0, 3.0), 0.1, (-14, -13, -11))),
                                      ((8, 7, 6), oblique((2.5, 2.5, 2.5), 0.0, (-5, -4, -3)))]:  # covers part only
        x = grid_world_coordinates(field_shape, field_affine)
        disp = np.stack([1.5 * np.sin(x[1] / 6), np.cos(x[2] / 5), 0.8 * np.sin(x[0] / 7)]).astype(np.float32)
        result = RegistrationResult(affine, disp, field_shape, field_affine, fixed_shape, fixed_affine, {})
        dense = result.dense_map()
        np.testing.assert_allclose(warp_volume(result, moving, "linear").array,
                                   warp_volume(result, moving, "linear", dense).array, atol=2e-5)
        np.testing.assert_array_equal(warp_volume(result, labels, "nearest").array,
                                      warp_volume(result, labels, "nearest", dense).array)
