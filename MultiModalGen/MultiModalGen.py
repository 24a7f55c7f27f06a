"""MultiModalGen: multimodal registration, few-shot and personalized segmentation, site adapters (3D Slicer module).

Layers: Widget (binds the .ui, one Logic call per action) -> Logic (node-level, usable from the Python console) ->
MultiModalGenLib (bridge node <-> Volume, task params/results, worker client) -> backend worker process
(`python -m multimodalgen.worker`, or a remote `multimodalgen serve`). Torch never loads in Slicer's process.
"""

import os
from typing import Annotated

import qt
import slicer
import vtk
from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode, vtkMRMLTransformNode
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import Choice, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget)
from slicer.util import VTKObservationMixin

MODALITY_FIELDS = {"T1": "t1Volume", "T2": "t2Volume", "PD": "pdVolume", "FLAIR": "flairVolume", "CT": "ctVolume",
                   "PET": "petVolume"}


class MultiModalGen(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("MultiModalGen")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Segmentation"),
                                  translate("qSlicerAbstractCoreModule", "Registration")]
        self.parent.dependencies = []
        self.parent.contributors = ["MultiModalGen developers (https://github.com/multimodalgen)"]
        self.parent.helpText = _(
            "Multimodal registration (rigid, affine, deformable; MR, CT, PET), few-shot segmentation from a few "
            "painted slices (the Segment Editor effect 'MultiModalGen few-shot'), personalized multimodal "
            "segmentation and site adapters, on a contrast-invariant 3D encoder. Work runs in a background process "
            "(or a remote GPU server); the panel never freezes. Sample volumes: Sample Data module, MultiModalGen. "
            'See the <a href="https://github.com/multimodalgen/SlicerMultiModalGen">documentation</a> and the '
            '<a href="https://github.com/multimodalgen/SlicerMultiModalGen#troubleshooting">troubleshooting</a> '
            "section.")
        self.parent.acknowledgementText = _(
            "Built on published methods: randomized-synthesis foundation encoder (Dey et al., arXiv 2411.02372), "
            "personalized invariant representations (Tan et al., arXiv 2411.06106), mixture-of-rank adapters "
            "(arXiv 2603.17514) and UMD pretraining techniques (arXiv 2404.06057). Weights are the project's own.")
        # The few-shot Segment Editor effect and the Sample Data entries need the application fully started.
        slicer.app.connect("startupCompleted()", self.onStartupCompleted)

    def onStartupCompleted(self):
        from MultiModalGenLib import startup

        startup.registerEditorEffect()
        startup.registerSampleData()


@parameterNodeWrapper
class MultiModalGenParameterNode:
    """Scene-saved parameters of the panel (user-level settings live in QSettings, see MultiModalGenLib.parameters)."""

    fixedVolume: vtkMRMLScalarVolumeNode
    movingVolume: vtkMRMLScalarVolumeNode
    registrationMode: Annotated[str, Choice(["rigid", "affine", "deformable"])] = "deformable"
    registrationPreset: Annotated[str, Choice(["fast", "accurate"])] = "fast"
    fixedMask: vtkMRMLScalarVolumeNode
    movingMask: vtkMRMLScalarVolumeNode
    movingSegmentation: vtkMRMLSegmentationNode
    outputTransform: vtkMRMLTransformNode
    outputVolume: vtkMRMLScalarVolumeNode
    t1Volume: vtkMRMLScalarVolumeNode
    t2Volume: vtkMRMLScalarVolumeNode
    pdVolume: vtkMRMLScalarVolumeNode
    flairVolume: vtkMRMLScalarVolumeNode
    ctVolume: vtkMRMLScalarVolumeNode
    petVolume: vtkMRMLScalarVolumeNode
    outputSegmentation: vtkMRMLSegmentationNode
    adapterName: str = "site-adapter"
    finetuneUseScene: bool = True


class MultiModalGenWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The panel: binds widgets to the parameter node and calls one Logic method per action."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._pollTimer = None

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/MultiModalGen.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = MultiModalGenLogic()
        self.logic.eventCallback = self.onTaskEvent
        self.logic.logCallback = self.appendLog
        self._pollTimer = qt.QTimer()
        self._pollTimer.setInterval(100)
        self._pollTimer.timeout.connect(self.logic.poll)
        self._pollTimer.start()
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        ui = self.ui
        ui.registerButton.connect("clicked(bool)", self.onRegister)
        ui.beforeAfterButton.connect("toggled(bool)", self.onBeforeAfter)
        ui.fewshotOpenEffectButton.connect("clicked(bool)", self.onOpenFewShotEffect)
        ui.segmentButton.connect("clicked(bool)", self.onSegment)
        ui.finetuneButton.connect("clicked(bool)", self.onFinetune)
        ui.adapterRefreshButton.connect("clicked(bool)", self.refreshAdapters)
        ui.adapterImportButton.connect("clicked(bool)", self.onAdapterImport)
        ui.adapterExportButton.connect("clicked(bool)", self.onAdapterExport)
        ui.adapterDeleteButton.connect("clicked(bool)", self.onAdapterDelete)
        ui.cancelButton.connect("clicked(bool)", self.onCancel)
        ui.testConnectionButton.connect("clicked(bool)", self.onTestConnection)
        ui.installDependenciesButton.connect("clicked(bool)", self.onInstallDependencies)
        import ctk

        ui.dataFolderPathLineEdit.filters = ctk.ctkPathLineEdit.Dirs
        self.settingsToGui()  # before connecting, so loading the settings does not write them back piecemeal
        settingsSignals = ((ui.deviceComboBox, "currentIndexChanged(int)"),
                           (ui.backendComboBox, "currentIndexChanged(int)"),
                           (ui.serverUrlLineEdit, "editingFinished()"), (ui.serverTokenLineEdit, "editingFinished()"),
                           (ui.dataFolderPathLineEdit, "currentPathChanged(QString)"),
                           (ui.threadsSpinBox, "valueChanged(int)"))
        for widget, signal in settingsSignals:
            widget.connect(signal, self.onSettingsChanged)
        self.initializeParameterNode()
        self.refreshAdapters()
        self.updateButtons()

    def cleanup(self) -> None:
        self.removeObservers()
        if self._pollTimer is not None:
            self._pollTimer.stop()
        if self.logic is not None:
            self.logic.shutdown()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateButtons)

    def onSceneStartClose(self, caller, event) -> None:
        if self.logic.isBusy():
            self.logic.cancel()
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())

    def setParameterNode(self, inputParameterNode) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateButtons)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateButtons)
            self.updateButtons()

    # -- state display -----------------------------------------------------------------------------------------
    def updateButtons(self, *args) -> None:
        p, ui = self._parameterNode, self.ui
        busy = self.logic is not None and self.logic.isBusy()
        if p is None:
            return
        ui.registerButton.enabled = not busy and bool(p.fixedVolume and p.movingVolume)
        ui.segmentButton.enabled = not busy and any(getattr(p, f) for f in MODALITY_FIELDS.values())
        ui.finetuneButton.enabled = not busy
        ui.cancelButton.enabled = busy

    def startTaskDisplay(self, text: str) -> None:
        self.ui.progressBar.setValue(0)
        self.ui.statusLabel.text = text
        self.updateButtons()

    def onTaskEvent(self, job, message) -> None:
        """Progress / result / error of the running task (called on the main thread by logic.poll)."""
        if message["type"] == "progress":
            fraction = message.get("fraction")
            self.ui.progressBar.setValue(int(round(100 * fraction)) if fraction is not None else 0)
            self.ui.statusLabel.text = f"{message['stage']}: {message['message']}"
        elif message["type"] == "error":
            self.ui.statusLabel.text = _("Stopped: ") + message["message"]
            self.appendLog(f"{message['kind']}: {message['message']}")
        self.updateButtons()

    def onTaskFinished(self, result, error) -> None:
        self.ui.progressBar.setValue(100 if error is None else 0)
        warnings = self.logic.runner.lastWarnings if self.logic is not None else []
        if error is None and warnings:
            self.ui.statusLabel.text = _("Done, with a warning (also in the log).")
            slicer.util.warningDisplay("\n\n".join(warnings), windowTitle=_("MultiModalGen"))
        elif error is None:
            self.ui.statusLabel.text = _("Done.")
        elif error.get("kind") != "cancelled":
            slicer.util.errorDisplay(error["message"], windowTitle=_("MultiModalGen"))
        self.updateButtons()
        self.refreshAdapters()

    def appendLog(self, text: str) -> None:
        self.ui.logTextEdit.appendPlainText(text)

    # -- actions (one Logic call each) -----------------------------------------------------------------------------
    def onRegister(self) -> None:
        p = self._parameterNode
        with slicer.util.tryWithErrorDisplay(_("Registration could not start."), waitCursor=True):
            self.logic.registerVolumes(p.fixedVolume, p.movingVolume, mode=p.registrationMode,
                                       preset=p.registrationPreset, fixedMask=p.fixedMask, movingMask=p.movingMask,
                                       movingSegmentation=p.movingSegmentation, outputTransform=p.outputTransform,
                                       outputVolume=p.outputVolume, wait=False, onFinished=self.onRegistrationFinished)
            self.startTaskDisplay(_("Registering..."))

    def onRegistrationFinished(self, transformNode, error) -> None:
        if transformNode is not None:
            self._parameterNode.outputTransform = transformNode
            self.ui.beforeAfterButton.checked = False
            slicer.util.setSliceViewerLayers(background=self._parameterNode.fixedVolume,
                                             foreground=self._parameterNode.movingVolume, foregroundOpacity=0.5)
        self.onTaskFinished(transformNode, error)

    def onBeforeAfter(self, showBefore: bool) -> None:
        p = self._parameterNode
        with slicer.util.tryWithErrorDisplay(_("Cannot toggle the transform."), waitCursor=False):
            self.logic.showRegistrationResult(p.movingVolume, p.outputTransform, not showBefore)
            self.ui.beforeAfterButton.text = _("Show after") if showBefore else _("Show before")

    def onOpenFewShotEffect(self) -> None:
        """Few-shot segmentation is the "MultiModalGen few-shot" Segment Editor effect: switch there."""
        with slicer.util.tryWithErrorDisplay(_("Cannot open the few-shot effect."), waitCursor=False):
            from MultiModalGenLib import startup

            slicer.util.selectModule("SegmentEditor")
            editor = slicer.modules.segmenteditor.widgetRepresentation().self().editor
            editor.setActiveEffectByName(startup.EFFECT_NAME)
            if editor.activeEffect() is None:
                raise RuntimeError(_("The few-shot effect is not registered; restart Slicer after installing."))

    def onSegment(self) -> None:
        p = self._parameterNode
        atlas = self.ui.tissueAtlasPathLineEdit.currentPath.strip() or None
        with slicer.util.tryWithErrorDisplay(_("Segmentation could not start."), waitCursor=True):
            self.logic.segmentPersonalized({m: getattr(p, f) for m, f in MODALITY_FIELDS.items()},
                                           outputSegmentation=p.outputSegmentation, adapter=self.selectedAdapter(),
                                           wait=False, onFinished=self.onSegmentFinished, atlas=atlas)
            if atlas:
                self.ui.tissueAtlasPathLineEdit.addCurrentPathToHistory()   # remembered for the next session
            self.startTaskDisplay(_("Segmenting..."))

    def onSegmentFinished(self, segmentationNode, error) -> None:
        if segmentationNode is not None:
            self._parameterNode.outputSegmentation = segmentationNode
        self.onTaskFinished(segmentationNode, error)

    def onFinetune(self) -> None:
        p = self._parameterNode
        sceneCase = ({"volumes": {m: getattr(p, f) for m, f in MODALITY_FIELDS.items()},
                      "segmentation": p.outputSegmentation} if p.finetuneUseScene and p.outputSegmentation else None)
        with slicer.util.tryWithErrorDisplay(_("Fine-tuning could not start."), waitCursor=True):
            self.logic.finetuneAdapter(p.adapterName, casesCsv=self.ui.finetuneCasesPathLineEdit.currentPath or None,
                                       sceneCase=sceneCase, wait=False, onFinished=self.onTaskFinished)
            self.startTaskDisplay(_("Fine-tuning adapter..."))

    def selectedAdapter(self):
        index = self.ui.adapterComboBox.currentIndex
        return None if index <= 0 else self.ui.adapterComboBox.currentText

    def refreshAdapters(self) -> None:
        names = [a["name"] for a in self.logic.listAdapters()]
        current = self.ui.adapterComboBox.currentText
        self.ui.adapterComboBox.clear()
        self.ui.adapterComboBox.addItems([_("(base model)")] + names)
        self.ui.adapterComboBox.setCurrentText(current)
        self.ui.adapterListWidget.clear()
        self.ui.adapterListWidget.addItems(names)

    def selectedListAdapter(self):
        item = self.ui.adapterListWidget.currentItem()
        if item is None:
            raise ValueError(_("Select an adapter in the list first."))
        return item.text()

    def onAdapterImport(self) -> None:
        path = qt.QFileDialog.getOpenFileName(self.parent, _("Import adapter"), "", _("Adapter archive (*.zip)"))
        if path:
            with slicer.util.tryWithErrorDisplay(_("Cannot import the adapter."), waitCursor=True):
                self.logic.importAdapter(path)
            self.refreshAdapters()

    def onAdapterExport(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Cannot export the adapter."), waitCursor=True):
            name = self.selectedListAdapter()
            path = qt.QFileDialog.getSaveFileName(self.parent, _("Export adapter"), name + ".zip", "*.zip")
            if path:
                self.logic.exportAdapter(name, path)

    def onAdapterDelete(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Cannot delete the adapter."), waitCursor=True):
            name = self.selectedListAdapter()
            if slicer.util.confirmOkCancelDisplay(_("Delete adapter '{name}'?").format(name=name)):
                self.logic.deleteAdapter(name)
        self.refreshAdapters()

    def onCancel(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Cancel failed."), waitCursor=False):
            seconds = self.logic.cancel()
            self.ui.statusLabel.text = _("Cancelled ({seconds:.1f} s); the scene was not changed.").format(
                seconds=seconds)
        self.updateButtons()

    # -- settings ----------------------------------------------------------------------------------------------------
    def settingsToGui(self) -> None:
        s, ui = self.logic.settings, self.ui
        ui.deviceComboBox.setCurrentText(s.device)
        ui.backendComboBox.setCurrentText(s.backend)
        ui.serverUrlLineEdit.text = s.serverUrl
        ui.serverTokenLineEdit.text = s.serverToken
        ui.dataFolderPathLineEdit.currentPath = s.dataFolder
        ui.threadsSpinBox.value = s.threads

    def onSettingsChanged(self, *args) -> None:
        ui = self.ui
        with slicer.util.tryWithErrorDisplay(_("Invalid setting."), waitCursor=False):
            self.logic.updateSettings(device=ui.deviceComboBox.currentText, backend=ui.backendComboBox.currentText,
                                      serverUrl=ui.serverUrlLineEdit.text.strip(),
                                      serverToken=ui.serverTokenLineEdit.text,
                                      dataFolder=ui.dataFolderPathLineEdit.currentPath, threads=ui.threadsSpinBox.value)
        remote = ui.backendComboBox.currentText == "remote"
        for w in (ui.serverUrlLineEdit, ui.serverTokenLineEdit, ui.testConnectionButton):
            w.enabled = remote

    def onTestConnection(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Connection test failed."), waitCursor=True):
            info = self.logic.testConnection()
            self.ui.statusLabel.text = _("Connected: MultiModalGen {version} (protocol {protocol}).").format(**info)

    def onInstallDependencies(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Dependency installation failed."), waitCursor=True):
            installed = self.logic.installDependencies(askConfirmation=True)
            self.ui.dependenciesLabel.text = _("installed: ") + ", ".join(installed) if installed else _("all present")


class MultiModalGenLogic(ScriptedLoadableModuleLogic):
    """Node-level API, usable from the Python console. Every action runs in the backend worker.

    Example::

        logic = slicer.util.getModuleLogic("MultiModalGen")
        transform = logic.registerVolumes(getNode("CT"), getNode("MR"), mode="deformable")

    Methods take nodes and values, block by default (``wait=True``) and raise on error; the panel passes
    ``wait=False`` plus an ``onFinished(result, error)`` callback and drives `poll()` from a timer.
    """

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        from MultiModalGenLib.runner import TaskRunner

        self.runner = TaskRunner(settingsStore=qt.QSettings())
        self.eventCallback = None
        self.logCallback = None

    def getParameterNode(self):
        return MultiModalGenParameterNode(super().getParameterNode())

    # -- tasks ---------------------------------------------------------------------------------------------------
    @property
    def settings(self):
        return self.runner.settings

    def updateSettings(self, **changes):
        return self.runner.updateSettings(**changes)

    def runTask(self, task, params, wait=True, onFinished=None, importResult=None, folder=None, onEvent=None):
        """Run any backend task (see multimodalgen.worker.tasks) and return its outputs (or the Job if not wait)."""
        self.runner.eventCallback, self.runner.logCallback = self.eventCallback, self.logCallback
        return self.runner.run(task, params, importResult or (lambda outputs: outputs), wait=wait,
                               onFinished=onFinished, folder=folder, tick=slicer.app.processEvents, onEvent=onEvent)

    def poll(self):
        self.runner.poll()

    def isBusy(self):
        return self.runner.isBusy()

    def cancel(self):
        """Stop the running task within about a second; the scene is left unchanged. Returns the seconds."""
        return self.runner.cancel()

    def shutdown(self):
        self.runner.shutdown()

    # -- registration --------------------------------------------------------------------------------------------
    def registerVolumes(self, fixedVolume, movingVolume, mode="deformable", preset="fast", fixedMask=None,
                        movingMask=None, movingSegmentation=None, outputTransform=None, outputVolume=None,
                        applyTransform=True, wait=True, onFinished=None):
        """Align `movingVolume` to `fixedVolume`. Returns the transform node (fixed -> moving, resampling
        convention: a linear transform, or a grid transform for deformable), applied to the moving volume (and
        its segmentation); its inverse is a second node, referenced by it as "inverse" (same matrix or grid stored
        ToParent: invertible and hardenable as any Slicer transform). `outputVolume` receives the moving volume
        resampled on the fixed grid."""
        from MultiModalGenLib import actions

        folder = actions.newExchangeFolder()
        params = actions.prepareRegistration(fixedVolume, movingVolume, mode, preset, fixedMask, movingMask,
                                             movingSegmentation, resample=outputVolume is not None, folder=folder)
        return self.runTask("register", params, wait=wait, onFinished=onFinished, folder=folder,
                            importResult=lambda outputs: actions.importRegistration(
                                outputs, movingVolume, fixedVolume, outputTransform, outputVolume, movingSegmentation,
                                applyTransform))

    def showRegistrationResult(self, movingVolume, transformNode, show=True):
        """Apply (show=True) or remove the registration transform on the moving volume (before/after view)."""
        if movingVolume is None or transformNode is None:
            raise ValueError(_("Register first: there is no output transform."))
        movingVolume.SetAndObserveTransformNodeID(transformNode.GetID() if show else None)

    # -- few-shot ------------------------------------------------------------------------------------------------
    def fewShotPreview(self, volumes, segmentationNode, segmentId, wait=True, onFinished=None):
        """Segment the structure painted on a few slices of `segmentId` in 3D, into a preview segmentation.
        Returns a description of the painted slices (the preview node arrives in onFinished / as the result)."""
        from MultiModalGenLib import actions

        volumes = [v for v in (volumes if isinstance(volumes, (list, tuple)) else [volumes]) if v is not None]
        folder = actions.newExchangeFolder()
        imageIds = [f"{v.GetID()}:{v.GetImageData().GetMTime()}" for v in volumes]
        params, annotation = actions.prepareFewShot(volumes, segmentationNode, segmentId, imageIds, folder)
        self.runTask("fewshot", params, wait=wait, onFinished=onFinished, folder=folder,
                     importResult=lambda outputs: actions.importFewShotPreview(outputs, segmentationNode, segmentId,
                                                                               volumes[0]))
        return actions.describeAnnotation(annotation)

    def fewShotApply(self, segmentationNode, segmentId, referenceVolume):
        """Copy the preview into the segment; the painted slices keep exactly what the user painted."""
        from MultiModalGenLib import actions

        actions.applyFewShotPreview(segmentationNode, segmentId, referenceVolume)

    def fewShotDiscard(self, segmentationNode):
        from MultiModalGenLib import actions

        actions.discardFewShotPreview(segmentationNode)

    # -- personalized segmentation and adapters ------------------------------------------------------------------
    def segmentPersonalized(self, volumesByModality, outputSegmentation=None, adapter=None, wait=True,
                            onFinished=None, refine="intensity", atlas=None, atlasWeight=None):
        """Segment from any subset of one patient's modalities ({"T1": node, "CT": node, ...}); returns the
        segmentation node with named, coloured segments. `refine`: "intensity" (default; the tissues' split is
        refined with the scan's own intensities) or "none" (the network's answer as is). `atlas`: optional path of
        a 4D tissue probability map (SPM TPM order) used as the spatial prior at power `atlasWeight` (None: the
        backend's default); see `multimodalgen segment --help`."""
        from MultiModalGenLib import actions

        folder = actions.newExchangeFolder()
        # a remote server looks the adapter up by name in its own adapter folder
        adapterPath = (adapter if self.settings.backend == "remote" else str(self.settings.adaptersFolder / adapter)
                       ) if adapter else None
        params = actions.prepareSegment(volumesByModality, adapterPath, folder, atlas=atlas, atlasWeight=atlasWeight)
        params["refine"] = refine
        candidates = [v for v in volumesByModality.values() if v is not None]
        return self.runTask("segment", params, wait=wait, onFinished=onFinished, folder=folder,
                            importResult=lambda outputs: actions.importSegment(outputs, candidates, outputSegmentation))

    def finetuneAdapter(self, adapterName, casesCsv=None, sceneCase=None, wait=True, onFinished=None):
        """Train a site adapter on CASES.csv and/or the current patient; saved in the adapters folder."""
        from MultiModalGenLib import actions

        folder = actions.newExchangeFolder()
        params = actions.prepareFinetune(casesCsv, sceneCase, adapterName, self.settings.adaptersFolder, folder)
        return self.runTask("finetune", params, wait=wait, onFinished=onFinished, folder=folder,
                            importResult=lambda outputs: actions.importFinetuneResult(outputs,
                                                                                      self.settings.adaptersFolder))

    def computeFeatures(self, volume, modality=None, wait=True, onFinished=None):
        """16-channel encoder features of `volume` as a new vector volume node."""
        from MultiModalGenLib import actions, bridge

        folder = actions.newExchangeFolder()
        params = {"image": actions.exportVolume(volume, folder, "image", modality)}

        def importFeatures(outputs):
            features = actions.readOutputVolume(outputs["features"])
            node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLVectorVolumeNode", volume.GetName() + " features")
            bridge.updateNodeFromVolume(node, features)
            return node

        return self.runTask("features", params, wait=wait, onFinished=onFinished, folder=folder,
                            importResult=importFeatures)

    def listAdapters(self):
        from MultiModalGenLib import actions

        return actions.listAdapters(self.settings.adaptersFolder)

    def importAdapter(self, path):
        from MultiModalGenLib import actions

        return actions.importAdapter(path, self.settings.adaptersFolder)

    def exportAdapter(self, name, zipPath):
        from MultiModalGenLib import actions

        return actions.exportAdapter(name, self.settings.adaptersFolder, zipPath)

    def deleteAdapter(self, name):
        from MultiModalGenLib import actions

        actions.deleteAdapter(name, self.settings.adaptersFolder)

    # -- environment ---------------------------------------------------------------------------------------------
    def testConnection(self):
        """Check the remote server (reachable, token, protocol); returns its /version answer."""
        from MultiModalGenLib.worker_client import RemoteBackend

        s = self.settings
        return RemoteBackend(s.serverUrl, s.serverToken).checkVersion()

    def installDependencies(self, askConfirmation=True):
        """Install missing backend packages (torch through PyTorchUtils) after one confirmation."""
        from MultiModalGenLib import dependencies

        return dependencies.installMissing(askConfirmation=askConfirmation,
                                           includeTorch=self.settings.backend == "local")


class MultiModalGenTest(ScriptedLoadableModuleTest):
    """Self-test inside Slicer: bridge geometry with real VTK/MRML objects and the worker protocol.

    Engine tests (a real registration) run only when MMG_TEST_REAL_BACKEND=1 (torch is large; CI stays light).
    """

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_volumeBridge()
        self.setUp()
        self.test_gridTransformConvention()
        self.setUp()
        self.test_workerProgressAndCancel()
        if os.environ.get("MMG_TEST_REAL_BACKEND") == "1":
            self.setUp()
            self.test_registrationEndToEnd()

    def test_volumeBridge(self):
        import numpy as np
        from MultiModalGenLib import bridge

        self.delayDisplay("Volume node <-> Volume")
        kji = np.zeros((5, 6, 7), dtype=np.int16)
        kji[3, 2, 1] = 100
        node = slicer.util.addVolumeFromArray(kji, ijkToRAS=np.array([[0, -2.0, 0, 10], [1.5, 0, 0, -5],
                                                                      [0, 0, -3.0, 7], [0, 0, 0, 1]]))
        volume = bridge.volumeFromNode(node)
        self.assertEqual(volume.array.shape, (7, 6, 5))
        self.assertEqual(volume.array[1, 2, 3], 100)
        ras = volume.affine @ [1, 2, 3, 1]
        ijkToRas = vtk.vtkMatrix4x4()
        node.GetIJKToRASMatrix(ijkToRas)
        self.assertTrue(np.allclose(ras, np.array(ijkToRas.MultiplyPoint([1, 2, 3, 1]))))

    def test_gridTransformConvention(self):
        import numpy as np
        from MultiModalGenLib import bridge

        self.delayDisplay("Displacement field -> grid transform (resampling convention)")
        affine = np.diag([2.0, -1.5, 2.5, 1.0])
        affine[:3, 3] = [-10, 20, 5]
        field = np.zeros((3, 6, 7, 5), dtype=np.float32)
        field[0], field[1], field[2] = 3.0, -1.0, 2.0
        node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLGridTransformNode")
        bridge.gridTransformFromField(node, field, affine)
        point = affine @ [2, 3, 2, 1]
        moved = node.GetTransformFromParent().TransformPoint(point[:3])
        self.assertTrue(np.allclose(np.array(moved) - point[:3], [3.0, -1.0, 2.0], atol=1e-4))
        back, backAffine = bridge.fieldFromGridTransform(node)
        self.assertTrue(np.allclose(back, field) and np.allclose(backAffine, affine))

    def test_workerProgressAndCancel(self):
        self.delayDisplay("Worker protocol: progress and cancel")
        logic = MultiModalGenLogic()
        events = []
        outputs = logic.runTask("selftest.sleep", {"seconds": 0.5, "steps": 5}, onEvent=lambda j, m: events.append(m))
        self.assertGreaterEqual(outputs["slept_s"], 0.5)
        self.assertTrue(any(m["type"] == "progress" for m in events))
        logic.runTask("selftest.sleep", {"seconds": 30, "interruptible": False}, wait=False)
        seconds = logic.cancel()
        self.assertLess(seconds, 1.0)
        logic.shutdown()

    def test_registrationEndToEnd(self):
        import numpy as np

        self.delayDisplay("Rigid registration of a shifted synthetic volume")
        grid = np.indices((40, 40, 40)).astype(np.float32)
        fixedArray = np.exp(-((grid - 20) ** 2).sum(0) / 60.0) * 1000
        movingArray = np.roll(fixedArray, 3, axis=2)
        fixed = slicer.util.addVolumeFromArray(fixedArray, ijkToRAS=np.eye(4), name="fixed")
        moving = slicer.util.addVolumeFromArray(movingArray, ijkToRAS=np.eye(4), name="moving")
        transform = MultiModalGenLogic().registerVolumes(fixed, moving, mode="rigid", preset="fast")
        fixedToMoving = vtk.vtkMatrix4x4()
        transform.GetMatrixTransformFromParent(fixedToMoving)
        # the moving blob sits 3 voxels (3 mm) further along i (= R): fixed -> moving translates by +3 mm in R
        self.assertAlmostEqual(fixedToMoving.GetElement(0, 3), 3.0, delta=0.5)
        self.assertEqual(moving.GetParentTransformNode(), transform)
