"""The "MultiModalGen few-shot" Segment Editor effect (Slicer side: options widgets, observers, timer).

Registered at startup by `MultiModalGenLib.startup.registerEditorEffect` (Slicer's ScriptedSegmentEditorEffect
pattern). Everything it decides lives in `effect_logic.FewShotEffectLogic` (tested outside Slicer); this class only
builds the options panel, observes the edited segmentation (each stroke = a SegmentModified event), polls the worker
with a QTimer while a preview is computing, and forwards buttons. Heavy work runs in the backend worker process.
"""

import os

import qt
import slicer
import vtk
from SegmentEditorEffects import AbstractScriptedSegmentEditorEffect


class SegmentEditorEffect(AbstractScriptedSegmentEditorEffect):
    """Paint a few slices of one or more segments; a 3D preview follows each stroke; Apply or Cancel."""

    def __init__(self, scriptedEffect):
        from MultiModalGenLib.startup import EFFECT_NAME

        scriptedEffect.name = EFFECT_NAME
        scriptedEffect.perSegment = False  # uses every visible painted segment at once
        scriptedEffect.requireSegments = True
        AbstractScriptedSegmentEditorEffect.__init__(self, scriptedEffect)
        self.fewshot = None
        self.observedSegmentation = None
        self.observerTags = []
        self.pollTimer = qt.QTimer()
        self.pollTimer.setInterval(30)
        self.pollTimer.timeout.connect(self.onPoll)

    def clone(self):
        import qSlicerSegmentationsEditorEffectsPythonQt as effects

        clonedEffect = effects.qSlicerSegmentEditorScriptedEffect(None)
        clonedEffect.setPythonSource(__file__.replace("\\", "/"))
        return clonedEffect

    def icon(self):
        path = os.path.join(os.path.dirname(__file__), "SegmentEditorEffect.png")
        return qt.QIcon(path) if os.path.exists(path) else qt.QIcon()

    def helpText(self):
        return ("<html>Few-shot 3D segmentation from a few painted slices (MultiModalGen).<p>"
                "Paint each structure (one segment each) on 2-5 slices of any axis with Paint, Draw, Threshold...; "
                "on every slice you paint, paint all visible structures present there (unpainted = absent). "
                "The preview (segments named '... (preview)') follows each stroke: a quick crop first, then the full "
                "volume. Masking settings (editable area, intensity range, overwrite) apply. <b>Apply</b> writes "
                "the preview into the segments (Ctrl+Z undoes), <b>Cancel</b> discards it. Painted slices are kept "
                "exactly as painted.<p>Options: extra modalities of the same patient (aligned), or a <b>support "
                "case</b>: a labelled volume of another patient instead of painting.</html>")

    # -- options panel ---------------------------------------------------------------------------------------------
    def setupOptionsFrame(self):
        self.slicesRadio = qt.QRadioButton("Painted slices")
        self.slicesRadio.checked = True
        self.supportRadio = qt.QRadioButton("Support case")
        self.supportRadio.toolTip = "Segment from one labelled case of another patient instead of painting."
        modeLayout = qt.QHBoxLayout()
        modeLayout.addWidget(self.slicesRadio)
        modeLayout.addWidget(self.supportRadio)
        self.scriptedEffect.addLabeledOptionsWidget("Mode:", modeLayout)

        self.extraVolumesSelector = slicer.qMRMLCheckableNodeComboBox()
        self.extraVolumesSelector.nodeTypes = ["vtkMRMLScalarVolumeNode"]
        self.extraVolumesSelector.setMRMLScene(slicer.mrmlScene)
        self.extraVolumesSelector.toolTip = "Other modalities of the same patient, aligned with the source volume."
        self.scriptedEffect.addLabeledOptionsWidget("Extra modalities:", self.extraVolumesSelector)

        self.supportVolumeSelector = self._nodeSelector("vtkMRMLScalarVolumeNode", "Support case image.")
        self.supportSegmentationSelector = self._nodeSelector("vtkMRMLSegmentationNode",
                                                              "Support case segmentation (its segments are copied).")
        self.supportFrame = qt.QFrame()
        supportLayout = qt.QFormLayout(self.supportFrame)
        supportLayout.setContentsMargins(0, 0, 0, 0)
        supportLayout.addRow("Support volume:", self.supportVolumeSelector)
        supportLayout.addRow("Support segmentation:", self.supportSegmentationSelector)
        self.scriptedEffect.addOptionsWidget(self.supportFrame)

        self.autoUpdateCheckBox = qt.QCheckBox("Update after each stroke")
        self.autoUpdateCheckBox.checked = True
        self.refineCheckBox = qt.QCheckBox("Refine to full resolution")
        self.refineCheckBox.checked = True
        self.refineCheckBox.toolTip = "After the quick preview (a crop of at most 128 voxels per axis), compute the " \
                                      "full volume when no stroke is pending."
        checks = qt.QHBoxLayout()
        checks.addWidget(self.autoUpdateCheckBox)
        checks.addWidget(self.refineCheckBox)
        self.scriptedEffect.addOptionsWidget(checks)

        self.statusLabel = qt.QLabel("")
        self.statusLabel.wordWrap = True
        self.scriptedEffect.addOptionsWidget(self.statusLabel)

        self.updateButton = qt.QPushButton("Update")
        self.updateButton.toolTip = "Compute the preview now."
        self.cancelButton = qt.QPushButton("Cancel")
        self.cancelButton.toolTip = "Discard the preview; the painting is unchanged."
        self.applyButton = qt.QPushButton("Apply")
        self.applyButton.toolTip = "Write the preview into the segments (undo with Ctrl+Z)."
        buttons = qt.QHBoxLayout()
        for button in (self.updateButton, self.cancelButton, self.applyButton):
            buttons.addWidget(button)
        self.scriptedEffect.addOptionsWidget(buttons)

        for widget, signal in ((self.slicesRadio, "toggled(bool)"), (self.autoUpdateCheckBox, "toggled(bool)"),
                               (self.refineCheckBox, "toggled(bool)"),
                               (self.extraVolumesSelector, "checkedNodesChanged()"),
                               (self.supportVolumeSelector, "currentNodeChanged(vtkMRMLNode*)"),
                               (self.supportSegmentationSelector, "currentNodeChanged(vtkMRMLNode*)")):
            widget.connect(signal, self.updateMRMLFromGUI)
        self.updateButton.connect("clicked()", self.onUpdate)
        self.cancelButton.connect("clicked()", self.onCancel)
        self.applyButton.connect("clicked()", self.onApply)

    def _nodeSelector(self, nodeType, toolTip):
        selector = slicer.qMRMLNodeComboBox()
        selector.nodeTypes = [nodeType]
        selector.noneEnabled = True
        selector.addEnabled = selector.removeEnabled = selector.renameEnabled = False
        selector.setMRMLScene(slicer.mrmlScene)
        selector.toolTip = toolTip
        return selector

    # -- life cycle ------------------------------------------------------------------------------------------------
    def _logic(self):
        if self.fewshot is None:
            from SegmentEditorMultiModalGenLib.effect_logic import FewShotEffectLogic

            self.fewshot = FewShotEffectLogic(
                self.scriptedEffect, lambda: slicer.util.getModuleLogic("MultiModalGen"), slicer.util,
                slicer.mrmlScene, slicer.vtkOrientedImageData, vtk.mutable,
                modeSet=slicer.qSlicerSegmentEditorAbstractEffect.ModificationModeSet)
            self.fewshot.statusCallback = self.onStatus
        return self.fewshot

    def activate(self):
        self._logic()
        self.observeSegmentation(True)
        self.pollTimer.start()
        self.updateMRMLFromGUI()

    def deactivate(self):
        self.pollTimer.stop()
        self.observeSegmentation(False)
        if self.fewshot is not None:
            self.fewshot.cleanup()

    def observeSegmentation(self, observe):
        import vtkSegmentationCorePython as vtkSegmentationCore

        parameterSetNode = self.scriptedEffect.parameterSetNode()
        segmentationNode = parameterSetNode.GetSegmentationNode() if parameterSetNode else None
        segmentation = segmentationNode.GetSegmentation() if (observe and segmentationNode) else None
        if segmentation is self.observedSegmentation:
            return
        for tag in self.observerTags:
            self.observedSegmentation.RemoveObserver(tag)
        self.observerTags, self.observedSegmentation = [], segmentation
        if segmentation is not None:
            # a stroke modifies a segment; removing a painted segment changes the painting too (adding an empty
            # segment does not: no update for it)
            for event in (vtkSegmentationCore.vtkSegmentation.SegmentModified,
                          vtkSegmentationCore.vtkSegmentation.SegmentRemoved):
                self.observerTags.append(segmentation.AddObserver(event, self.onSegmentationModified))

    def onSegmentationModified(self, caller, event):
        self._logic().onSegmentationModified()
        self.updateGUIFromMRML()

    def onPoll(self):
        if self.fewshot is not None:
            state = self.fewshot.state
            self.fewshot.poll()
            if self.fewshot.state != state:
                self.updateGUIFromMRML()

    def onStatus(self, text):
        self.statusLabel.text = text

    # -- GUI <-> logic ---------------------------------------------------------------------------------------------
    def updateGUIFromMRML(self):
        self.observeSegmentation(self.fewshot is not None)
        state = self.fewshot.state if self.fewshot is not None else "idle"
        support = self.supportRadio.checked
        self.supportFrame.visible = support
        self.autoUpdateCheckBox.enabled = not support
        self.applyButton.enabled = state in ("preview", "computing")
        self.cancelButton.enabled = state != "idle"

    def updateMRMLFromGUI(self, *args):
        logic = self._logic()
        logic.mode = "support" if self.supportRadio.checked else "slices"
        logic.autoUpdate = self.autoUpdateCheckBox.checked
        logic.refine = self.refineCheckBox.checked
        logic.extraVolumes = list(self.extraVolumesSelector.checkedNodes())
        logic.supportVolume = self.supportVolumeSelector.currentNode()
        logic.supportSegmentation = self.supportSegmentationSelector.currentNode()
        self.updateGUIFromMRML()

    def onUpdate(self):
        with slicer.util.tryWithErrorDisplay("Few-shot preview could not start.", waitCursor=True):
            self._logic().requestUpdate()
        self.updateGUIFromMRML()

    def onCancel(self):
        with slicer.util.tryWithErrorDisplay("Cannot discard the preview.", waitCursor=False):
            self._logic().cancel()
        self.updateGUIFromMRML()

    def onApply(self):
        with slicer.util.tryWithErrorDisplay("Cannot apply the preview.", waitCursor=True):
            self._logic().apply(tick=slicer.app.processEvents)
        self.updateGUIFromMRML()
