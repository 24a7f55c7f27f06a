"""Inside-Slicer checks of the "MultiModalGen few-shot" Segment Editor effect (run by ctest through
slicer_add_python_unittest).

Outside Slicer the effect's logic runs on stand-ins (Testing/slicer/test_fewshot_effect.py); here the real Segment
Editor confirms that the effect registers and activates, and that its masking rules (what the preview shows)
equal Slicer's own `modifySegmentByLabelmap` for every editable-area mode and the intensity range. With
MMG_TEST_REAL_BACKEND=1 (torch installed) a painting goes through the worker: preview, Apply, Ctrl+Z.
"""

import os
import unittest

import numpy as np
import slicer

from MultiModalGenLib import startup
from SegmentEditorMultiModalGenLib import masking


def ellipsoid(shape, centre, radii):
    g = np.indices(shape).astype(np.float32)
    return sum(((g[a] - centre[a]) / radii[a]) ** 2 for a in range(3)) < 1


class MultiModalGenFewShotEffectTest(unittest.TestCase):
    def setUp(self):
        import qSlicerSegmentationsEditorEffectsPythonQt as effects

        slicer.mrmlScene.Clear()
        factory = effects.qSlicerSegmentEditorEffectFactory.instance()
        if startup.EFFECT_NAME not in [e.name for e in factory.registeredEffects()]:
            startup.registerEditorEffect()
        self.shape = (24, 30, 32)  # (K, J, I)
        self.truth = ellipsoid(self.shape, (12, 15, 15), (7, 8, 9))
        image = 100 + 300 * self.truth + np.random.default_rng(0).normal(0, 10, self.shape)
        self.volume = slicer.util.addVolumeFromArray(image.astype(np.float32),
                                                     ijkToRAS=np.diag([1.2, 1.2, 2.0, 1.0]), name="MR")
        self.seg = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode")
        self.seg.CreateDefaultDisplayNodes()
        self.seg.SetReferenceImageGeometryParameterFromVolumeNode(self.volume)
        self.ids = [self.seg.GetSegmentation().AddEmptySegment(name) for name in ("a", "b", "c")]
        self.editorWidget = slicer.qMRMLSegmentEditorWidget()
        self.editorWidget.setMRMLScene(slicer.mrmlScene)
        self.editorNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentEditorNode")
        self.editorWidget.setMRMLSegmentEditorNode(self.editorNode)
        self.editorWidget.setSegmentationNode(self.seg)
        self.editorWidget.setSourceVolumeNode(self.volume)
        self.editorWidget.setMaximumNumberOfUndoStates(5)

    def tearDown(self):
        self.editorWidget.setActiveEffect(None)
        self.editorWidget = None

    def activate(self):
        self.editorWidget.setActiveEffectByName(startup.EFFECT_NAME)
        effect = self.editorWidget.activeEffect()
        self.assertIsNotNone(effect, "the few-shot effect is not registered")
        return effect

    def setMask(self, segmentId, mask):
        slicer.util.updateSegmentBinaryLabelmapFromArray(mask.astype(np.uint8), self.seg, segmentId, self.volume)

    def test_effect_registers_and_activates(self):
        effect = self.activate()
        self.assertEqual(effect.name, startup.EFFECT_NAME)
        self.assertIsNotNone(effect.self().fewshot)
        self.assertEqual(effect.self().fewshot.state, "idle")
        self.assertFalse(effect.self().applyButton.enabled)

    def test_preview_masking_equals_slicer_masking(self):
        effect = self.activate()
        effect.self().autoUpdateCheckBox.checked = False  # these writes are not strokes to segment
        self.assertFalse(effect.self().fewshot.autoUpdate)
        rng = np.random.default_rng(1)
        voxels = slicer.util.arrayFromVolume(self.volume)
        self.seg.GetDisplayNode().SetSegmentVisibility(self.ids[2], False)
        for mode in masking.MASK_MODES:
            for intensity in (False, True):
                masks = {s: rng.random(self.shape) < 0.3 for s in self.ids}
                for s, m in masks.items():
                    self.setMask(s, m)
                self.editorNode.SetMaskMode(getattr(slicer.vtkMRMLSegmentEditorNode, mode))
                self.editorNode.SetMaskSegmentID(self.ids[1])
                self.editorNode.SetSourceVolumeIntensityMask(intensity)
                self.editorNode.SetSourceVolumeIntensityMaskRange(150, 420)
                new = rng.random(self.shape) < 0.5
                settings = masking.MaskSettings.fromEditorNode(self.editorNode)
                visible = {s for s in self.ids if self.seg.GetDisplayNode().GetSegmentVisibility(s)}
                editable = masking.editableMask(settings, self.ids[0], masks, visible, voxels if intensity else None)
                ours = masking.applySet(new, masks[self.ids[0]], editable)
                # the same write through Slicer's own masked labelmap modification
                scratch = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode")
                scratchId = scratch.GetSegmentation().AddEmptySegment("new")
                slicer.util.updateSegmentBinaryLabelmapFromArray(new.astype(np.uint8), scratch, scratchId,
                                                                 self.volume)
                labelmap = slicer.vtkOrientedImageData()
                scratch.GetBinaryLabelmapRepresentation(scratchId, labelmap)
                effect.self().scriptedEffect.modifySegmentByLabelmap(
                    self.seg, self.ids[0], labelmap, slicer.qSlicerSegmentEditorAbstractEffect.ModificationModeSet)
                slicers = slicer.util.arrayFromSegmentBinaryLabelmap(self.seg, self.ids[0], self.volume) > 0
                self.assertTrue(np.array_equal(ours > 0, slicers), f"{mode}, intensity {intensity}")
                slicer.mrmlScene.RemoveNode(scratch)

    @unittest.skipUnless(os.environ.get("MMG_TEST_REAL_BACKEND") == "1", "needs the backend worker (torch)")
    def test_painting_preview_apply_undo(self):
        effect = self.activate()
        logic = effect.self().fewshot
        painting = np.zeros(self.shape, bool)
        painting[[8, 12, 16]] = self.truth[[8, 12, 16]]
        self.setMask(self.ids[0], painting)  # a stroke: the effect starts a preview
        logic.waitUntilIdle(tick=slicer.app.processEvents)
        self.assertEqual(logic.state, "preview", logic.lastError)
        logic.apply(tick=slicer.app.processEvents)
        result = slicer.util.arrayFromSegmentBinaryLabelmap(self.seg, self.ids[0], self.volume) > 0
        dice = 2 * (result & self.truth).sum() / (result.sum() + self.truth.sum())
        self.assertGreater(dice, 0.8)
        self.editorWidget.undo()
        restored = slicer.util.arrayFromSegmentBinaryLabelmap(self.seg, self.ids[0], self.volume) > 0
        self.assertTrue(np.array_equal(restored, painting))
