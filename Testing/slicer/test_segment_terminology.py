"""Segmentations the module creates carry names, colours and Slicer terminology entries from the models' label
definitions (`multimodalgen.terminology`), with stand-in nodes."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import slicer_standins as sx

from MultiModalGenLib import actions, bridge
from multimodalgen.io import write_label
from multimodalgen.terminology import GREY_MATTER, WHITE_MATTER
from multimodalgen.volume import Volume


@pytest.fixture()
def fake_slicer(monkeypatch):
    monkeypatch.setitem(sys.modules, "slicer", sx.fake_slicer_module())
    sx.SCENE.nodes.clear()


def test_segment_result_gets_names_colours_and_terminology(fake_slicer, tmp_path):
    affine = np.diag([1.5, 1.5, 2.0, 1.0])
    label = np.zeros((8, 9, 7), np.uint8)
    label[1:4], label[5:7], label[7, 0, 0] = 1, 2, 9
    volume = sx.VolumeNode(bridge.volumeArrayToSlicerArray(np.zeros(label.shape, np.float32)), affine, "T1")
    path = write_label(Volume(label, affine, "LABEL"), tmp_path / "seg.nii.gz")
    # what the segment task returns: names (older workers) - colours and terminology come from the label definitions
    outputs = {"segmentation": {"file": str(path)},
               "segments": [{"label": 1, "name": "grey matter"}, {"label": 2, "name": "white matter"}]}
    node = actions.importSegment(outputs, volume)
    segmentation = node.segmentation
    byName = {segmentation.GetSegment(s).GetName(): segmentation.GetSegment(s) for s in segmentation.order}
    assert set(byName) == {"grey matter", "white matter", "label 9"}
    assert byName["grey matter"].tags["TerminologyEntry"] == GREY_MATTER.terminology_entry()
    assert byName["white matter"].tags["TerminologyEntry"] == WHITE_MATTER.terminology_entry()
    assert byName["white matter"].GetColor() == pytest.approx(WHITE_MATTER.color)
    assert "TerminologyEntry" not in byName["label 9"].tags  # no standard code: no made-up entry
    assert byName["label 9"].GetColor() != byName["grey matter"].GetColor()
    wm = segmentation.masks[segmentation.GetSegmentIdBySegmentName("white matter")]
    assert np.array_equal(bridge.slicerArrayToVolumeArray(wm) > 0, label == 2)
    # a task that already sends full label definitions wins over the defaults
    outputs["segments"] = [dict(GREY_MATTER.to_segment(), color=[0.1, 0.2, 0.3], name="cortex")]
    other = actions.importSegment(outputs, volume)
    cortex = other.segmentation.GetSegment(other.segmentation.GetSegmentIdBySegmentName("cortex"))
    assert cortex.GetColor() == (0.1, 0.2, 0.3) and cortex.tags["TerminologyEntry"] == GREY_MATTER.terminology_entry()
