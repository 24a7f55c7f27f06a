"""The Slicer-side effect class itself (`SegmentEditorEffect`: options panel, segmentation observers, poll timer,
buttons) driven outside Slicer: PySide6 with PythonQt-style shims (render_effect.py), the Segment Editor stand-ins
and a real worker. A stroke on the observed segmentation leads to a preview, the buttons follow the state, Apply
is one undo step, and a deactivated effect stops listening."""

from __future__ import annotations

import contextlib
import os
import sys
import time
import types

import numpy as np
import pytest
import segment_editor_standins as se
import slicer_standins as sx
from effect_helpers import phantom, slices_of

from MultiModalGenLib import bridge
from MultiModalGenLib.runner import TaskRunner

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
pytest.importorskip("PySide6.QtWidgets")
STUBS = ("qt", "slicer", "vtk", "SegmentEditorEffects", "vtkSegmentationCorePython")


@pytest.fixture()
def runner():
    pytest.importorskip("multimodalgen.fewshot.session")
    r = TaskRunner(settingsStore=sx.SettingsStore())
    r.updateSettings(device="cpu", threads=1)
    yield r
    r.shutdown()


@pytest.fixture()
def stubs(monkeypatch):
    for name in STUBS:
        monkeypatch.delitem(sys.modules, name, raising=False)
    sx.SCENE.nodes.clear()
    yield
    for name in STUBS:
        sys.modules.pop(name, None)


def test_effect_class_stroke_preview_apply_undo(runner, stubs):
    import render_effect

    image, truth = phantom()
    volume = sx.VolumeNode(bridge.volumeArrayToSlicerArray(image), np.diag([1.2, 1.2, 2.0, 1.0]), "MR")
    segmentation = sx.SegmentationNode("Segmentation")
    segId = segmentation.segmentation.AddEmptySegment("", "tumour", (0.9, 0.2, 0.2))
    editor = se.SegmentEditorNode(segmentation, volume)
    scripted = se.ScriptedEffect(editor)
    errors = []

    class SlicerUtil(sx.Util):
        """slicer.util stand-in plus the two GUI helpers the effect class calls."""

        getModuleLogic = staticmethod(lambda name: se.LogicStandIn(runner))

        @staticmethod
        @contextlib.contextmanager
        def tryWithErrorDisplay(message, waitCursor=False):  # Slicer shows the error and carries on
            try:
                yield
            except Exception as exc:  # noqa: BLE001
                errors.append(f"{message} {exc}")

    def configure(modules):
        slicer = modules["slicer"]
        slicer.util, slicer.mrmlScene, slicer.vtkOrientedImageData = SlicerUtil, sx.SCENE, sx.OrientedImageData
        slicer.app = types.SimpleNamespace(processEvents=lambda: None)
        slicer.qSlicerSegmentEditorAbstractEffect = types.SimpleNamespace(
            ModificationModeSet=se.ScriptedEffect.ModificationModeSet)
        modules["vtk"].mutable = sx.Mutable
        modules["vtkSegmentationCorePython"].vtkSegmentation = sx.Segmentation

    host, effect = render_effect.build(scripted=scripted, configure=configure)
    effect.activate()
    assert sorted(e for e, _ in segmentation.segmentation.observers.values()) == [sx.Segmentation.SegmentModified,
                                                                                  sx.Segmentation.SegmentRemoved]
    segmentation.segmentation.AddEmptySegment("", "empty", (0, 1, 0))  # not a stroke: no run
    assert effect.fewshot.state == "idle" and effect.fewshot.timings == []
    painting = slices_of(truth["tumour"], [9, 15, 21])
    se.paint(segmentation, segId, bridge.volumeArrayToSlicerArray(painting))  # a stroke
    assert effect.fewshot.state == "computing"
    deadline = time.monotonic() + 120
    while effect.fewshot.state == "computing" and time.monotonic() < deadline:
        effect.onPoll()  # what the effect's QTimer does
        time.sleep(0.01)
    assert effect.fewshot.state == "preview", (errors, effect.statusLabel.text())
    assert effect.applyButton.isEnabled() and effect.cancelButton.isEnabled()
    assert "preview in" in effect.statusLabel.text()
    effect.onApply()
    assert not errors and len(scripted.undoStack) == 1
    applied = bridge.slicerArrayToVolumeArray(segmentation.segmentation.masks[segId]) > 0
    assert 2 * (applied & truth["tumour"]).sum() / (applied.sum() + truth["tumour"].sum()) > 0.75
    assert effect.fewshot.state == "idle" and not effect.applyButton.isEnabled()
    effect.onApply()  # nothing to apply: one clear message, no exception
    assert len(errors) == 1 and "no preview" in errors[0]
    effect.deactivate()
    assert segmentation.segmentation.observers == {}
    runs = len(effect.fewshot.timings)
    se.paint(segmentation, segId, bridge.volumeArrayToSlicerArray(painting))
    assert effect.fewshot.state == "idle" and len(effect.fewshot.timings) == runs
    scripted.undo()
    assert np.array_equal(bridge.slicerArrayToVolumeArray(segmentation.segmentation.masks[segId]) > 0, painting > 0)
    host.deleteLater()
