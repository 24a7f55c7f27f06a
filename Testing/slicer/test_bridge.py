"""Bridge math (MRML node <-> Volume) against known IJKToRAS matrices, oblique and flipped grids, and files.

Stand-in nodes (slicer_standins) store voxels as (K, J, I) views like Slicer; the checks go through real file
I/O (nibabel and SimpleITK) so the bridge, the backend Volume and the files agree on where each voxel is.
"""

from __future__ import annotations

import numpy as np
import pytest
import slicer_standins as sx

from MultiModalGenLib import bridge
from multimodalgen.errors import UserInputError
from multimodalgen.volume import Volume


def rotation(angles_deg):
    ax, ay, az = np.deg2rad(angles_deg)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def make_affine(spacing=(0.8, 1.1, 2.5), angles=(12.0, -8.0, 30.0), origin=(-40.0, 15.0, 60.0), flip=()):
    direction = rotation(angles)
    for axis in flip:
        direction[:, axis] *= -1
    affine = np.eye(4)
    affine[:3, :3] = direction * np.asarray(spacing)[None]
    affine[:3, 3] = origin
    return affine


GRIDS = {
    "axis_aligned": make_affine(angles=(0, 0, 0)),
    "oblique": make_affine(),
    "flipped_LPS": make_affine(angles=(0, 0, 0), flip=(0, 1)),
    "oblique_flipped": make_affine(flip=(2,)),
}


def single_voxel_node(shape_ijk=(9, 7, 5), voxel=(6, 2, 3), affine=None, name="v"):
    kji = np.zeros(tuple(reversed(shape_ijk)), dtype=np.int16)
    kji[voxel[2], voxel[1], voxel[0]] = 100
    return sx.VolumeNode(kji, affine if affine is not None else np.eye(4), name=name)


@pytest.mark.parametrize("grid", list(GRIDS))
def test_volume_from_node_axis_order_and_affine(grid):
    affine = GRIDS[grid]
    node = single_voxel_node(affine=affine)
    vol = bridge.volumeFromNode(node, modality="CT", util=sx.Util)
    assert vol.array.shape == (9, 7, 5)
    assert np.argwhere(vol.array == 100).tolist() == [[6, 2, 3]]
    np.testing.assert_allclose(vol.affine, affine)
    # the bright voxel is where Slicer shows it: IJKToRAS @ (i, j, k, 1)
    np.testing.assert_allclose(vol.affine @ [6, 2, 3, 1], node.ijkToRas @ [6, 2, 3, 1])
    # a copy, not a view of VTK memory
    vol.array[0, 0, 0] = 7
    assert node.kji[0, 0, 0] == 0


@pytest.mark.parametrize("grid", list(GRIDS))
def test_node_volume_file_agree_on_world_position(grid, tmp_path):
    """Node -> Volume -> NIfTI (nibabel) and -> NRRD (SimpleITK, LPS) put the voxel at the same RAS point."""
    nib = pytest.importorskip("nibabel")
    sitk = pytest.importorskip("SimpleITK")
    from multimodalgen.io import write_volume

    affine = GRIDS[grid]
    vol = bridge.volumeFromNode(single_voxel_node(affine=affine), util=sx.Util)
    expected_ras = affine @ [6, 2, 3, 1]
    write_volume(vol, tmp_path / "v.nii.gz")
    img = nib.load(str(tmp_path / "v.nii.gz"))
    ijk = np.argwhere(np.asanyarray(img.dataobj) == 100)[0]
    np.testing.assert_allclose(img.affine @ [*ijk, 1], expected_ras, atol=1e-4)
    write_volume(vol, tmp_path / "v.nrrd")
    itk_img = sitk.ReadImage(str(tmp_path / "v.nrrd"))
    zyx = np.argwhere(sitk.GetArrayFromImage(itk_img) == 100)[0]
    lps = np.array(itk_img.TransformIndexToPhysicalPoint([int(v) for v in zyx[::-1]]))
    np.testing.assert_allclose(lps * [-1, -1, 1], expected_ras[:3], atol=1e-4)


def test_linear_parent_transform_is_composed_and_nonlinear_refused():
    shift = np.eye(4)
    shift[:3, 3] = [5.0, -3.0, 2.0]
    node = single_voxel_node(affine=GRIDS["oblique"])
    node.parent = sx.TransformNode("shift", shift)
    vol = bridge.volumeFromNode(node, util=sx.Util)
    np.testing.assert_allclose(vol.affine, shift @ GRIDS["oblique"])
    assert np.allclose(bridge.volumeFromNode(node, util=sx.Util, applyParentTransform=False).affine,
                       GRIDS["oblique"])
    node.parent = sx.TransformNode("warp", linear=False)
    with pytest.raises(UserInputError, match="non-linear transform"):
        bridge.volumeFromNode(node, util=sx.Util)


def test_vector_volume_channels_and_write_back():
    kji = np.random.default_rng(0).normal(size=(5, 7, 9, 3)).astype(np.float32)
    node = sx.VolumeNode(kji, GRIDS["flipped_LPS"])
    vol = bridge.volumeFromNode(node, util=sx.Util)
    assert vol.array.shape == (3, 9, 7, 5)
    assert vol.array[2, 8, 1, 4] == kji[4, 1, 8, 2]
    target = sx.VolumeNode(np.zeros((1, 1, 1)), np.eye(4))
    bridge.updateNodeFromVolume(target, Volume(vol.array[0] * 2, vol.affine), util=sx.Util)
    np.testing.assert_allclose(target.kji, kji[..., 0] * 2)
    np.testing.assert_allclose(target.ijkToRas, GRIDS["flipped_LPS"])


def smooth_field(shape, seed=0):
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.linspace(0, 1, s) for s in shape], indexing="ij"))
    field = np.zeros((3, *shape))
    for c in range(3):
        w = rng.normal(size=3)
        field[c] = 3.0 * np.sin(grid[0] * w[0] + grid[1] * w[1] + grid[2] * w[2] + c)
    return field.astype(np.float32)


@pytest.mark.parametrize("grid", ["oblique", "oblique_flipped"])
def test_displacement_field_grid_transform_round_trip(grid):
    affine = GRIDS[grid]
    field = smooth_field((8, 6, 5))
    node = sx.TransformNode("reg")
    bridge.gridTransformFromField(node, field, affine, vtkModules=sx.VTK_MODULES)
    back, back_affine = bridge.fieldFromGridTransform(node, vtkModules=sx.VTK_MODULES)
    np.testing.assert_allclose(back, field, atol=1e-6)
    np.testing.assert_allclose(back_affine, affine, atol=1e-9)
    # Slicer (vtkOrientedGridTransform index mapping) and the backend evaluate the same displacement anywhere
    rng = np.random.default_rng(1)
    index = rng.uniform(0, 1, size=(50, 3)) * (np.array(field.shape[1:]) - 1)
    points = (affine @ np.c_[index, np.ones(50)].T)[:3].T
    image = node.GetTransformFromParent().GetDisplacementGrid()
    slicer_view = bridge.evaluateGrid(image.scalars.reshape(5, 6, 8, 3), image.GetOrigin(), image.GetSpacing(),
                                      np.array(node.GetTransformFromParent().GetGridDirectionMatrix().a[:3, :3]),
                                      points)
    np.testing.assert_allclose(slicer_view, bridge.evaluateField(field, affine, points), atol=1e-5)


def test_resampling_convention_moves_moving_onto_fixed():
    """With u = fixed->moving, sampling the moving image at p + u(p) reproduces the fixed image."""
    from scipy.ndimage import map_coordinates

    affine = GRIDS["oblique"]
    shape = (16, 14, 10)
    idx = np.stack(np.meshgrid(*[np.arange(s, dtype=float) for s in shape], indexing="ij"))
    world = np.einsum("ab,bijk->aijk", affine[:3, :3], idx) + affine[:3, 3, None, None, None]
    t = np.array([4.0, -2.5, 3.0])  # the moving anatomy sits at p + t

    centre = (affine @ [*(np.array(shape) / 2.0), 1])[:3]

    def anatomy(p):
        return np.exp(-((p - centre[:, None, None, None]) ** 2).sum(0) / 80.0)

    fixed = anatomy(world)
    moving = anatomy(world - t[:, None, None, None])
    field = np.broadcast_to(t[:, None, None, None], (3, *shape)).astype(np.float32)
    grid = bridge.fieldToGridArray(field)
    sample_points = world.reshape(3, -1).T
    displaced = sample_points + bridge.evaluateGrid(grid, *bridge.gridGeometryFromAffine(affine), sample_points)
    moving_index = (np.linalg.inv(affine) @ np.c_[displaced, np.ones(len(displaced))].T)[:3]
    warped = map_coordinates(moving, moving_index, order=1, mode="nearest").reshape(shape)
    inner = (slice(3, -3),) * 3
    assert np.abs(warped[inner] - fixed[inner]).max() < 0.05
    assert np.abs(moving[inner] - fixed[inner]).max() > 0.2  # the test is not trivial


def test_linear_transform_from_parent_is_resampling_direction():
    node = sx.TransformNode("lin")
    fixed_to_moving = make_affine(spacing=(1, 1, 1), angles=(5, 0, 10), origin=(3, 4, 5))
    bridge.linearTransformFromParent(node, fixed_to_moving, util=sx.Util)
    np.testing.assert_allclose(node.fromParentMatrix, fixed_to_moving)
    np.testing.assert_allclose(bridge.resamplingMatrixToModeling(fixed_to_moving), node.toParent)


def test_segmentation_label_map_round_trip():
    ref = single_voxel_node(shape_ijk=(6, 5, 4), voxel=(1, 1, 1), affine=GRIDS["oblique"], name="ref")
    seg = sx.SegmentationNode()
    a = seg.segmentation.AddEmptySegment("liver", "liver", (1, 0, 0))
    b = seg.segmentation.AddEmptySegment("tumor", "tumor", (0, 1, 0))
    mask_a = np.zeros((4, 5, 6), np.uint8)
    mask_a[1:3, 1:4, 1:5] = 1
    mask_b = np.zeros_like(mask_a)
    mask_b[2, 2, 2:4] = 1  # overlaps liver: later segment wins
    seg.segmentation.masks = {a: mask_a, b: mask_b}
    label = bridge.labelVolumeFromSegmentation(seg, ref, util=sx.Util)
    assert label.array.shape == (6, 5, 4)
    assert label.array[2, 2, 2] == 2 and label.array[1, 1, 1] == 1 and label.array[0, 0, 0] == 0
    assert [s["name"] for s in label.metadata["segments"]] == ["liver", "tumor"]
    out = sx.SegmentationNode()
    ids = bridge.updateSegmentationFromLabelVolume(out, label, ref, {1: "liver", 2: "tumor"}, util=sx.Util)
    assert out.reference is ref
    np.testing.assert_array_equal(out.segmentation.masks[ids[2]], mask_b)
    np.testing.assert_array_equal(out.segmentation.masks[ids[1]], mask_a * (1 - mask_b))
    wrong = Volume(label.array, GRIDS["axis_aligned"], "LABEL")
    with pytest.raises(UserInputError, match="reference volume's grid"):
        bridge.updateSegmentationFromLabelVolume(out, wrong, ref, {1: "liver"}, util=sx.Util)


def test_painted_slices_are_preserved_exactly():
    annotation = np.zeros((12, 10, 20), np.uint8)
    annotation[3:8, 2:6, 4] = 1
    annotation[4:9, 3:7, 11] = 1
    annotation[5, 5, 11] = 0  # a hole the user left on purpose
    assert bridge.annotatedSlices(annotation) == (2, [4, 11])
    prediction = np.zeros_like(annotation)
    prediction[2:10, 1:8, 2:15] = 1
    merged = bridge.mergePreservingAnnotations(prediction, annotation)
    np.testing.assert_array_equal(merged[:, :, [4, 11]], annotation[:, :, [4, 11]])
    np.testing.assert_array_equal(np.delete(merged, [4, 11], axis=2), np.delete(prediction, [4, 11], axis=2))
    with pytest.raises(UserInputError, match="no painted voxels"):
        bridge.annotatedSlices(np.zeros((3, 3, 3)))
