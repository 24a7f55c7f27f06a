"""Resampling against SimpleITK's result, reorientation, cropping, isotropic grids and normalisation."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from multimodalgen.errors import UserInputError
from multimodalgen.intensity import normalize
from multimodalgen.io.sitk_bridge import sitk_to_volume, volume_to_sitk
from multimodalgen.resample import (bounding_box, crop_to_box, isotropic_grid, reorient, resample_isotropic,
                                    resample_like, resample_to_grid)
from multimodalgen.volume import Volume, grid_world_coordinates

from volume_factories import oblique_affine


def sitk_resample(volume: Volume, reference: Volume, interpolator) -> np.ndarray:
    out = sitk.Resample(volume_to_sitk(volume), volume_to_sitk(reference), sitk.Transform(), interpolator, 0.0)
    return sitk_to_volume(out).array


def test_linear_resampling_matches_simpleitk(volume):
    target = Volume(np.zeros((15, 16, 14), np.float32), oblique_affine((1.5, 1.1, 1.3), (3.0, 5.0, 20.0),
                                                                          (-28.0, 13.0, 41.0)))
    ours = resample_like(volume, target, "linear").array
    theirs = sitk_resample(volume, target, sitk.sitkLinear)
    assert (theirs != 0).mean() > 0.3  # the grids overlap substantially
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-2)  # everywhere, borders included


def test_nearest_resampling_of_labels_matches_simpleitk(label_volume):
    target = Volume(np.zeros((12, 13, 10), np.uint8), oblique_affine((1.6, 1.0, 1.9), (12.0, -3.0, 20.0),
                                                                        (-29.0, 12.0, 40.5), flip_i=False))
    ours = resample_like(label_volume, target, "nearest").array
    theirs = sitk_resample(label_volume, target, sitk.sitkNearestNeighbor)
    assert ours.dtype == np.uint8
    agree = (ours == theirs).mean()
    assert agree > 0.99  # ties at exactly half-voxel positions may round differently
    assert set(np.unique(ours)) <= {0, 1, 2}


def test_identity_resampling_is_exact(volume):
    same = resample_to_grid(volume, volume.shape3d, volume.affine, "linear")
    np.testing.assert_allclose(same.array, volume.array, rtol=1e-5, atol=1e-3)


def test_world_positions_preserved_by_resampling(volume):
    """A value sampled at a world point is the same whichever grid it went through."""
    iso = resample_isotropic(volume, 0.7)
    point_ijk = np.array([6, 7, 4])
    world = (volume.affine @ np.r_[point_ijk, 1.0])[:3]
    iso_ijk = np.linalg.solve(iso.affine, np.r_[world, 1.0])[:3]
    # the point is a voxel centre of the original grid; linear interpolation near it stays close
    nearest = tuple(np.round(iso_ijk).astype(int))
    assert abs(iso.array[nearest] - volume.array[tuple(point_ijk)]) < 0.15 * np.ptp(volume.array)


def test_isotropic_grid_keeps_field_of_view(volume):
    shape, affine = isotropic_grid(volume, 1.0)
    np.testing.assert_allclose(np.linalg.norm(affine[:3, :3], axis=0), 1.0)
    corner_old = volume.affine @ np.r_[-0.5, -0.5, -0.5, 1.0]
    corner_new = affine @ np.r_[-0.5, -0.5, -0.5, 1.0]
    np.testing.assert_allclose(corner_old, corner_new, atol=1e-6)
    assert shape == tuple(int(np.ceil(e)) for e in volume.spacing * np.asarray(volume.shape3d))


@pytest.mark.parametrize("code", ["RAS", "LPS", "LIA", "SPL"])
def test_reorient_is_exact_and_keeps_world_positions(volume, code):
    axis_aligned = Volume(volume.array, np.diag([-1.0, 2.0, 1.5, 1.0]) @ np.eye(4), "T1")
    out = reorient(axis_aligned, code)
    assert out.orientation == code
    before = grid_world_coordinates(axis_aligned.shape3d, axis_aligned.affine).reshape(3, -1).T
    after = grid_world_coordinates(out.shape3d, out.affine).reshape(3, -1).T
    order_before = np.lexsort(before.T)
    order_after = np.lexsort(after.T)
    np.testing.assert_allclose(before[order_before], after[order_after], atol=1e-9)
    np.testing.assert_array_equal(axis_aligned.array.ravel()[order_before], out.array.ravel()[order_after])


def test_crop_keeps_world_positions(volume):
    cropped = crop_to_box(volume, (2, 3, 1), (10, 12, 9))
    assert cropped.shape3d == (8, 9, 8)
    np.testing.assert_allclose(cropped.affine @ np.r_[0, 0, 0, 1.0], volume.affine @ np.r_[2, 3, 1, 1.0])
    assert cropped.array[0, 0, 0] == volume.array[2, 3, 1]


def test_crop_outside_refused(volume):
    with pytest.raises(UserInputError, match="outside"):
        crop_to_box(volume, (50, 0, 0), (60, 5, 5))


def test_bounding_box_with_margin(label_volume):
    start, stop = bounding_box(label_volume.array == 1, margin=2)
    assert start == (2, 1, 0) and stop == (14, 12, 10)
    with pytest.raises(UserInputError, match="empty"):
        bounding_box(np.zeros((3, 3, 3)))


def test_normalize_ct_window_and_mr_percentiles():
    ct = np.array([-2000.0, -1000.0, 500.0, 2000.0, 3000.0]).reshape(1, 1, 5)
    np.testing.assert_allclose(normalize(ct, "CT").ravel(), [0, 0, 0.5, 1, 1])
    rng = np.random.default_rng(0)
    mr = np.concatenate([np.zeros(5000), rng.normal(300, 50, 5000)]).reshape(10, 10, 100)
    out = normalize(mr, "T1")
    assert out.dtype == np.float32 and out.min() == 0.0 and out.max() == 1.0
    assert 0.4 < np.median(out[mr > 0]) < 0.6  # tissue spans the range, background does not compress it
    assert np.all(normalize(np.full((2, 2, 2), 5.0), "T2") == 0)


def test_axis_parallel_path_matches_simpleitk(volume):
    """Grids with parallel axes take the separable path; it must agree with SimpleITK too (borders included)."""
    source = Volume(volume.array, np.diag([1.2, 0.9, 2.5, 1.0]) @ np.eye(4), "T1")
    source.affine[:3, 3] = [-3.0, 4.0, 1.0]
    target_affine = np.diag([0.7, 1.3, 1.1, 1.0])
    target_affine[:3, 3] = [-4.1, 3.3, -0.2]
    target = Volume(np.zeros((40, 14, 44), np.float32), target_affine)
    ours = resample_like(source, target, "linear").array
    theirs = sitk_resample(source, target, sitk.sitkLinear)
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-2)
    labels = Volume((volume.array > 300).astype(np.uint8), source.affine)
    ours_nn = resample_like(labels, target, "nearest").array
    assert (ours_nn == sitk_resample(labels, target, sitk.sitkNearestNeighbor)).mean() > 0.99
