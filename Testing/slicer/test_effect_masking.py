"""The effect's masking rules (what the preview shows) agree with the Segment Editor's (what Apply writes, through
the scripted-effect stand-in's independent implementation), for every editable-area mode, the intensity range and
overwrite; segment infos carry terminology; optional engine result fields are read when present."""

from __future__ import annotations

import numpy as np
import pytest
import segment_editor_standins as se
import slicer_standins as sx

from MultiModalGenLib.segment_info import applySegmentInfo, completeSegmentInfos, segmentInfo
from SegmentEditorMultiModalGenLib import result_fields
from SegmentEditorMultiModalGenLib.masking import (MASK_MODES, MaskSettings, applySet, editableMask,
                                                   overwrittenSegmentIds)
from multimodalgen.errors import UserInputError


def scene_with_segments(rng, shape=(6, 7, 8)):
    volume = sx.VolumeNode(rng.normal(0, 1, shape), np.eye(4), "v")
    node = sx.SegmentationNode("s")
    ids = [node.segmentation.AddEmptySegment("", name, (1, 0, 0)) for name in ("a", "b", "c")]
    for segId in ids:
        node.segmentation.masks[segId] = (rng.random(shape) < 0.3).astype(np.uint8)
    node.display.SetSegmentVisibility(ids[2], False)
    return volume, node, ids


@pytest.mark.parametrize("mode", MASK_MODES)
@pytest.mark.parametrize("intensity", [False, True])
def test_preview_masking_matches_the_editor(mode, intensity):
    rng = np.random.default_rng(MASK_MODES.index(mode) + 10 * intensity)
    volume, node, ids = scene_with_segments(rng)
    editor = se.SegmentEditorNode(node, volume)
    editor.SetMaskMode(getattr(editor, mode))
    editor.SetMaskSegmentID(ids[1])
    editor.SetSourceVolumeIntensityMask(intensity)
    editor.SetSourceVolumeIntensityMaskRange(-0.5, 0.8)
    settings = MaskSettings.fromEditorNode(editor)
    assert settings.maskMode == mode and settings.intensityMask == intensity
    new = rng.random(volume.kji.shape) < 0.5
    masks = {s: node.segmentation.masks[s] > 0 for s in ids}
    visible = {s for s in ids if node.display.GetSegmentVisibility(s)}
    editable = editableMask(settings, ids[0], masks, visible, volume.kji if intensity else None)
    ours = applySet(new, masks[ids[0]], editable)
    effect = se.ScriptedEffect(editor)
    labelmap = sx.OrientedImageData()
    labelmap.mask = new.astype(np.uint8)
    effect.modifySegmentByLabelmap(node, ids[0], labelmap, effect.ModificationModeSet)
    assert np.array_equal(ours, node.segmentation.masks[ids[0]])
    if mode != "PaintAllowedEverywhere" or intensity:
        assert editable is not None and 0 < editable.sum() < editable.size  # the rule does restrict something


def test_overwrite_modes_name_the_segments_the_editor_erases():
    rng = np.random.default_rng(3)
    volume, node, ids = scene_with_segments(rng)
    visible = {s for s in ids if node.display.GetSegmentVisibility(s)}
    for mode, expected in (("OverwriteAllSegments", ids[1:]), ("OverwriteVisibleSegments", [ids[1]]),
                           ("OverwriteNone", [])):
        settings = MaskSettings(overwriteMode=mode)
        assert overwrittenSegmentIds(settings, ids[0], ids, visible) == expected
        editor = se.SegmentEditorNode(node, volume)
        editor.SetOverwriteMode(getattr(editor, mode))
        before = {s: node.segmentation.masks[s].copy() for s in ids}
        labelmap = sx.OrientedImageData()
        labelmap.mask = np.ones(volume.kji.shape, np.uint8)
        se.ScriptedEffect(editor).modifySegmentByLabelmap(node, ids[0], labelmap, se.ScriptedEffect.ModificationModeSet)
        erased = [s for s in ids[1:] if not np.array_equal(before[s], node.segmentation.masks[s])]
        assert erased == expected
        for s in ids:
            node.segmentation.masks[s] = before[s]


def test_mask_settings_reject_unknown_modes_and_missing_segment():
    with pytest.raises(UserInputError, match="editable-area"):
        MaskSettings(maskMode="Nowhere")
    settings = MaskSettings(maskMode="PaintAllowedInsideSingleSegment", maskSegmentId="gone")
    with pytest.raises(UserInputError, match="does not exist"):
        editableMask(settings, "a", {"a": np.zeros((2, 2, 2), bool)}, {"a"})


def test_segment_infos_complete_names_colours_and_terminology():
    infos = completeSegmentInfos([{"label": 2, "name": "white matter"}, {"label": 4, "name": "lesion",
                                                                         "color": [0.1, 0.2, 0.3]}], [1, 2, 4])
    assert [i["label"] for i in infos] == [1, 2, 4]
    assert infos[0]["name"] == "label 1" and infos[0]["terminology"] == ""
    assert "SCT^68523003^Cerebral white matter" in infos[1]["terminology"]
    assert infos[1]["color"] == pytest.approx([0.96, 0.93, 0.82])
    assert infos[2]["color"] == [0.1, 0.2, 0.3] and infos[2]["terminology"] == ""
    segment = sx.Segment("x", (0, 0, 0))
    applySegmentInfo(segment, infos[1], preview=True)
    assert segment.GetName() == "white matter (preview)" and segment.tags["MultiModalGen.Preview"] == "1"
    back = segmentInfo(segment, 2, sx.Mutable)
    assert back["terminology"] == infos[1]["terminology"] and back["color"] == pytest.approx(infos[1]["color"])


def test_optional_result_fields():
    names = {1: "liver", 2: "spleen"}
    assert result_fields.describe({"report": {"seconds": {}}}, names) == ""
    outputs = {"confidence": [{"label": 1, "confidence": 0.9}, {"label": 2, "confidence": 0.4}],
               "report": {"suggest_next_slice": [{"label": 2, "axis": 0, "index": 7}, 33, {"bad": 1}]}}
    assert result_fields.confidences(outputs) == {1: 0.9, 2: 0.4}
    assert result_fields.describe(outputs, names).splitlines() == [
        "confidence: liver 0.90, spleen 0.40", "paint next: spleen, I slice 7", "paint next: slice 33"]
    assert result_fields.confidences({"confidence": 0.5}) == {None: 0.5}
    assert result_fields.confidences({"confidence": "high"}) == {}
