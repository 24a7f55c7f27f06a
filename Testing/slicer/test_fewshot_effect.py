"""The "MultiModalGen few-shot" Segment Editor effect outside Slicer: stand-in scene and editor, real worker.

Preview after strokes (coalesced while computing), painted slices kept, masking shown in the preview and applied by
the effect, Apply as one undo step, Cancel, support-case mode, terminology on preview and applied segments."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import segment_editor_standins as se
import slicer_standins as sx
from effect_helpers import TUMOUR_TERMINOLOGY, dice, make_scene, mask_ijk, paint_slices

from MultiModalGenLib import bridge
from MultiModalGenLib.runner import TaskRunner
from MultiModalGenLib.segment_info import PREVIEW_NAME_SUFFIX, PREVIEW_TAG
from SegmentEditorMultiModalGenLib.effect_logic import PREVIEW_ROLE


@pytest.fixture(autouse=True)
def fake_slicer(monkeypatch):
    monkeypatch.setitem(sys.modules, "slicer", sx.fake_slicer_module())
    sx.SCENE.nodes.clear()


@pytest.fixture(scope="module")
def runner():
    pytest.importorskip("multimodalgen.fewshot.session")
    r = TaskRunner(settingsStore=sx.SettingsStore())
    r.updateSettings(device="cpu", threads=1)
    yield r
    r.shutdown()


def test_strokes_give_a_preview_that_keeps_painted_slices(runner):
    scene = make_scene(runner)
    tumour = paint_slices(scene, "tumour", [9, 15, 21])   # stroke 1 starts a run at once
    assert scene.logic.state == "computing"
    cyst = paint_slices(scene, "cyst", [9, 15, 21])       # stroke 2 while computing: queued, not lost
    scene.logic.waitUntilIdle()
    assert [t["kind"] for t in scene.logic.timings] == ["quick", "quick"]  # two strokes -> two runs, in order
    assert scene.logic.state == "preview"
    preview = scene.segmentation.GetNodeReference(PREVIEW_ROLE)
    segs = preview.GetSegmentation()
    assert set(segs.order) == {scene.ids["tumour"], scene.ids["cyst"]}
    for name, painting in (("tumour", tumour), ("cyst", cyst)):
        segment = segs.GetSegment(scene.ids[name])
        assert segment.GetName() == name + PREVIEW_NAME_SUFFIX and segment.tags[PREVIEW_TAG] == "1"
        predicted = mask_ijk(preview, scene.ids[name])
        painted_slices = np.flatnonzero(painting.any(axis=(0, 1)))
        assert np.array_equal(predicted[:, :, painted_slices], painting[:, :, painted_slices] > 0)
        assert dice(predicted, scene.truth[name]) > 0.75, name
        # the user's own segment is untouched by the preview
        assert np.array_equal(mask_ijk(scene.segmentation, scene.ids[name]), painting > 0)
    assert segs.GetSegment(scene.ids["tumour"]).tags["TerminologyEntry"] == TUMOUR_TERMINOLOGY
    assert preview.GetAttribute(PREVIEW_TAG) == "1" and preview.display.opacity < 1
    assert scene.effect.undoStack == []  # previews are not undo steps
    last = scene.logic.timings[-1]
    assert last["warm"] and last["engine_s"] > 0 and last["stroke_to_preview_s"] >= last["worker_s"] > 0
    assert "preview in" in scene.status[-1]


def test_apply_is_one_undo_step_and_cancel_leaves_the_painting(runner):
    scene = make_scene(runner)
    tumour = paint_slices(scene, "tumour", [9, 15, 21])
    scene.logic.waitUntilIdle()
    preview = scene.segmentation.GetNodeReference(PREVIEW_ROLE)
    expected = mask_ijk(preview, scene.ids["tumour"])
    scene.logic.cancel()
    assert scene.segmentation.GetNodeReference(PREVIEW_ROLE) is None and preview.GetID() not in sx.SCENE.nodes
    assert np.array_equal(mask_ijk(scene.segmentation, scene.ids["tumour"]), tumour > 0)
    assert scene.effect.undoStack == [] and scene.logic.state == "idle"
    with pytest.raises(Exception, match="no preview"):
        scene.logic.apply()

    scene.logic.requestUpdate()  # the Update button
    written = scene.logic.apply()  # waits for the run, then applies
    assert written == [scene.ids["tumour"]] and len(scene.effect.undoStack) == 1
    assert scene.effect.modifications == [(scene.ids["tumour"], se.ScriptedEffect.ModificationModeSet)]
    applied = mask_ijk(scene.segmentation, scene.ids["tumour"])
    assert dice(applied, expected) > 0.95 and applied.sum() > 3 * (tumour > 0).sum()
    assert scene.logic.timings[-1]["kind"] == "quick" and len(scene.logic.timings) == 2  # Apply's write: no run
    assert scene.logic.state == "idle" and scene.segmentation.GetNodeReference(PREVIEW_ROLE) is None
    scene.effect.undo()  # Ctrl+Z
    assert np.array_equal(mask_ijk(scene.segmentation, scene.ids["tumour"]), tumour > 0)


def test_masking_settings_shape_the_preview_and_the_apply(runner):
    scene = make_scene(runner)
    image = bridge.slicerArrayToVolumeArray(scene.volume.kji)
    # Editable area: outside all other segments; the cyst segment is locked by painting it fully
    cyst_full = scene.truth["tumour"] & (np.indices(image.shape)[0] < 16)
    scene.segmentation.display.SetSegmentVisibility(scene.ids["cyst"], False)  # hidden: not a few-shot input
    se.paint(scene.segmentation, scene.ids["cyst"], bridge.volumeArrayToSlicerArray(cyst_full.astype(np.uint8)))
    scene.editor.SetMaskMode(scene.editor.PaintAllowedOutsideAllSegments)
    scene.editor.SetSourceVolumeIntensityMask(True)
    scene.editor.SetSourceVolumeIntensityMaskRange(400, 10000)
    scene.logic.waitUntilIdle()  # the cyst stroke asked for a run with nothing visible painted: status, no run
    assert scene.logic.timings == [] and "nothing painted" in scene.status[-1]
    tumour = paint_slices(scene, "tumour", [9, 15, 21])
    scene.logic.waitUntilIdle()
    preview = scene.segmentation.GetNodeReference(PREVIEW_ROLE)
    predicted = mask_ijk(preview, scene.ids["tumour"])
    added = predicted & ~(tumour > 0)
    assert added.sum() > 100
    assert not (added & cyst_full).any()          # editable area respected
    assert (image[added] >= 400).all()            # intensity range respected
    # Apply goes through modifySegmentByLabelmap, which applies the same rules: the result equals the preview
    scene.logic.apply()
    assert np.array_equal(mask_ijk(scene.segmentation, scene.ids["tumour"]), predicted)
    assert np.array_equal(mask_ijk(scene.segmentation, scene.ids["cyst"]), cyst_full)  # nothing overwritten


def test_auto_update_off_waits_for_update_and_optional_fields_show(runner):
    scene = make_scene(runner)
    scene.logic.autoUpdate = False
    paint_slices(scene, "tumour", [9, 15, 21])
    assert scene.logic.state == "idle" and scene.logic.timings == []
    scene.logic.requestUpdate()
    scene.logic.waitUntilIdle()
    # the engine reports a per-structure confidence and where to paint next (issue 24): shown
    assert scene.logic.state == "preview" and "confidence: tumour" in scene.logic.describe()
    assert "paint next:" in scene.logic.describe()
    # other spellings of the optional fields: shown as well
    engine_fields = {k: v for k, v in scene.logic.lastOutputs.items() if k not in ("confidence", "suggested_slice")}
    scene.logic.lastOutputs = dict(engine_fields, confidence={"1": 0.87},
                                   report={"suggested_slice": {"label": 1, "axis": 2, "index": 12}})
    text = scene.logic.describe()
    assert "confidence: tumour 0.87" in text and "paint next: tumour, K slice 12" in text


@pytest.mark.slow
def test_support_case_mode_creates_named_segments_on_apply(runner):
    scene = make_scene(runner, names=("tumour",))
    support = make_scene(runner, names=("tumour",))
    support.segmentation.segmentation.masks[support.ids["tumour"]] = bridge.volumeArrayToSlicerArray(
        support.truth["tumour"].astype(np.uint8))
    scene.logic.mode = "support"
    scene.logic.supportVolume, scene.logic.supportSegmentation = support.volume, support.segmentation
    scene.segmentation.segmentation.GetSegment(scene.ids["tumour"]).SetName("other name")  # no match: new segment
    scene.logic.requestUpdate()
    scene.logic.waitUntilIdle()
    assert scene.logic.timings[-1]["kind"] == "support", scene.status
    written = scene.logic.apply()
    new = scene.segmentation.segmentation.GetSegment(written[0])
    assert written[0] != scene.ids["tumour"] and new.GetName() == "tumour"
    assert new.tags["TerminologyEntry"] == TUMOUR_TERMINOLOGY and PREVIEW_TAG not in new.tags
    assert dice(mask_ijk(scene.segmentation, written[0]), scene.truth["tumour"]) > 0.7


def test_large_volume_quick_crop_is_refined_after_a_pause_and_before_apply(runner):
    scene = make_scene(runner, shape=(140, 36, 24), names=("tumour",))
    now = [0.0]
    scene.logic.clock = lambda: now[0]  # the user's pause, without sleeping
    paint_slices(scene, "tumour", [7, 12, 17])
    scene.logic.waitUntilIdle()
    scene.logic.poll()
    assert [t["kind"] for t in scene.logic.timings] == ["quick"] and scene.logic.state == "preview"
    now[0] += scene.logic.refineDelayS  # paused long enough: the full-resolution run starts on the next poll
    scene.logic.poll()
    assert scene.logic.state == "computing"
    scene.logic.waitUntilIdle()
    assert [t["kind"] for t in scene.logic.timings] == ["quick", "full"] and scene.logic.state == "preview"
    # with background refinement off, Apply computes the full result itself before writing
    scene.logic.refine = False
    paint_slices(scene, "tumour", [7, 10, 12, 17])
    scene.logic.waitUntilIdle()
    assert scene.logic.timings[-1]["kind"] == "quick"
    scene.logic.apply()
    assert [t["kind"] for t in scene.logic.timings[-2:]] == ["quick", "full"]
    applied = mask_ijk(scene.segmentation, scene.ids["tumour"])
    assert dice(applied, scene.truth["tumour"]) > 0.75


def test_slices_painted_along_another_axis(runner):
    scene = make_scene(runner, names=("tumour",))
    truth = scene.truth["tumour"]
    painting = np.zeros_like(truth, dtype=np.uint8)
    painting[[12, 18, 24]] = truth[[12, 18, 24]]  # sagittal (i) slices
    se.paint(scene.segmentation, scene.ids["tumour"], bridge.volumeArrayToSlicerArray(painting))
    scene.logic.waitUntilIdle()
    predicted = mask_ijk(scene.segmentation.GetNodeReference(PREVIEW_ROLE), scene.ids["tumour"])
    assert np.array_equal(predicted[[12, 18, 24]], truth[[12, 18, 24]])
    assert dice(predicted, truth) > 0.75
