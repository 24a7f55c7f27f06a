"""The panel actions end to end outside Slicer: stand-in nodes -> NIfTI -> real worker -> results -> stand-in
nodes, through the same TaskRunner the Logic uses (a `slicer` stand-in provides util and mrmlScene)."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
import slicer_standins as sx

from MultiModalGenLib import actions, bridge
from MultiModalGenLib.runner import TaskRunner


@pytest.fixture()
def fake_slicer(monkeypatch):
    monkeypatch.setitem(sys.modules, "slicer", sx.fake_slicer_module())
    monkeypatch.setitem(sys.modules, "vtk", types.SimpleNamespace(mutable=sx.Mutable))
    monkeypatch.setattr(bridge, "_vtkModules", lambda: sx.VTK_MODULES)
    sx.SCENE.nodes.clear()
    return sys.modules["slicer"]


@pytest.fixture(scope="module")
def runner():
    r = TaskRunner(settingsStore=sx.SettingsStore())
    r.updateSettings(device="cpu", threads=1)
    yield r
    r.shutdown()


def blobs_kji(shape_ijk, centres):
    grid = np.indices(shape_ijk).astype(np.float32)
    out = np.zeros(shape_ijk, np.float32)
    for weight, c in centres:
        out += weight * 1000 * np.exp(-sum((grid[a] - c[a]) ** 2 * s for a, s in enumerate((1, 1.5, 0.7))) / 30)
    return bridge.volumeArrayToSlicerArray(out)


def test_registration_action_creates_and_applies_transforms(fake_slicer, runner):
    affine = np.diag([1.5, 1.5, 2.0, 1.0])
    shape = (24, 24, 20)
    fixed = sx.VolumeNode(blobs_kji(shape, [(1.0, (12, 12, 10)), (0.5, (7, 15, 9))]), affine, "fixed")
    moving = sx.VolumeNode(blobs_kji(shape, [(1.0, (14, 11, 10)), (0.5, (9, 14, 9))]), affine, "moving")
    resampled = fake_slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "resampled")
    folder = actions.newExchangeFolder()
    params = actions.prepareRegistration(fixed, moving, "rigid", "fast", resample=True, folder=folder)
    linear = runner.run("register", params, folder=folder, importResult=lambda outputs: actions.importRegistration(
        outputs, moving, fixed, None, resampled))
    assert linear.className == "vtkMRMLLinearTransformNode" and moving.GetParentTransformNode() is linear
    assert np.allclose(linear.fromParentMatrix[:3, 3], [3.0, -1.5, 0.0], atol=0.5)
    inverse = linear.GetNodeReference("inverse")
    assert linear.references == {"fixed": fixed.GetID(), "moving": moving.GetID(), "inverse": inverse.GetID()}
    # the inverse node holds the same matrix ToParent: its resampling direction is moving -> fixed
    assert inverse.className == "vtkMRMLLinearTransformNode" and fixed.GetParentTransformNode() is None
    np.testing.assert_allclose(inverse.fromParentMatrix @ linear.fromParentMatrix, np.eye(4), atol=1e-9)
    inverse.Inverse()  # inverting it in Slicer gives the forward map back
    np.testing.assert_allclose(inverse.fromParentMatrix, linear.fromParentMatrix, atol=1e-9)
    assert resampled.kji.shape == fixed.kji.shape and np.allclose(resampled.ijkToRas, affine)
    assert not folder.exists()  # the exchange folder is cleaned up
    # Deformable again on the same moving volume, now under the linear transform: the moving side is taken in
    # its own coordinates and the result (a grid transform) replaces the earlier one as its parent.
    folder = actions.newExchangeFolder()
    params = actions.prepareRegistration(fixed, moving, "deformable", "fast", folder=folder)
    grid = runner.run("register", params, folder=folder, importResult=lambda outputs: actions.importRegistration(
        outputs, moving, fixed, linear))
    assert grid.className == "vtkMRMLGridTransformNode" and moving.GetParentTransformNode() is grid
    field, field_affine = bridge.fieldFromGridTransform(grid, vtkModules=sx.VTK_MODULES)
    centre = (affine @ [12, 12, 10, 1])[:3]
    assert np.allclose(bridge.evaluateField(field, field_affine, centre[None])[0], [3.0, -1.5, 0.0], atol=0.75)
    # the inverse became a grid node (the earlier linear inverse is replaced), holding the forward grid ToParent:
    # Slicer inverts it where it is used; inverting the node gives the forward field back, ready to harden
    inverse_grid = grid.GetNodeReference("inverse")
    assert inverse_grid.className == "vtkMRMLGridTransformNode" and inverse_grid.GetID() not in (None, inverse.GetID())
    assert inverse_grid.GetTransformFromParent() is None and inverse_grid.GetTransformToParent() is not None
    inverse_grid.Inverse()
    back, back_affine = bridge.fieldFromGridTransform(inverse_grid, vtkModules=sx.VTK_MODULES)
    np.testing.assert_array_equal(back, field)
    np.testing.assert_allclose(back_affine, field_affine)


def test_fewshot_preview_then_apply_keeps_painted_slices(fake_slicer, runner):
    shape, affine = (40, 40, 30), np.diag([1.2, 1.2, 2.0, 1.0])
    g = np.indices(shape).astype(np.float32)
    truth = (((g[0] - 20) / 9) ** 2 + ((g[1] - 19) / 7) ** 2 + ((g[2] - 15) / 8) ** 2) < 1
    image = 100 + 300 * truth + np.random.default_rng(1).normal(0, 20, shape)
    volume = sx.VolumeNode(bridge.volumeArrayToSlicerArray(image.astype(np.float32)), affine, "mr")
    seg = sx.SegmentationNode("seg")
    segId = seg.segmentation.AddEmptySegment("tumour", "tumour", (1, 0, 0))
    seg.segmentation.GetSegment(segId).SetTag("TerminologyEntry", "T^1^tumour")
    painted = np.zeros(shape, np.uint8)
    for k in (10, 15, 20):
        painted[:, :, k] = truth[:, :, k]
    painted[20, 19, 15] = 0  # a hole the user left on purpose on a painted slice
    seg.segmentation.masks[segId] = bridge.volumeArrayToSlicerArray(painted)
    folder = actions.newExchangeFolder()
    params, annotation = actions.prepareFewShot([volume], seg, segId, ["mr:1"], folder)
    assert actions.describeAnnotation(annotation) == "3 slice(s) along K: 10, 15, 20"
    preview = runner.run("fewshot", params, folder=folder, importResult=lambda outputs: actions.importFewShotPreview(
        outputs, seg, segId, volume))
    assert preview.GetName() == "seg preview" and seg.GetNodeReference("MultiModalGenPreview") is preview
    previewSegment = preview.segmentation.GetSegment(preview.segmentation.order[0])
    assert previewSegment.GetName() == "tumour (preview)" and previewSegment.tags["MultiModalGen.Preview"] == "1"
    assert previewSegment.tags["TerminologyEntry"] == "T^1^tumour"  # carried over from the user's segment
    assert np.array_equal(seg.segmentation.masks[segId], bridge.volumeArrayToSlicerArray(painted))  # untouched
    actions.applyFewShotPreview(seg, segId, volume)
    result = bridge.slicerArrayToVolumeArray(seg.segmentation.masks[segId]) > 0
    assert np.array_equal(result[:, :, [10, 15, 20]], painted[:, :, [10, 15, 20]] > 0)
    dice = 2 * (result & truth).sum() / (result.sum() + truth.sum())
    assert dice > 0.8
    assert seg.GetNodeReference("MultiModalGenPreview") is None  # the preview is gone after Apply
