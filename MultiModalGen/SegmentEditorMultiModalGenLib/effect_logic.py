"""What the "MultiModalGen few-shot" Segment Editor effect does, without Qt widgets (tested outside Slicer).

Flow (like Slicer's "Grow from seeds"): the user paints a few slices of one or more segments with any editor tool;
each stroke (a `vtkSegmentation::SegmentModified` event) asks for an update; the painting goes to the warm backend
worker (`fewshot` task: features and head stay in the worker per image) and the 3D result appears in a separate
*preview* segmentation (names suffixed " (preview)", half transparent, tagged). Strokes made while the worker
computes are coalesced into one follow-up run. A quick run (a crop of at most 128 voxels per axis around the
painting) comes first; on larger volumes a full-resolution run follows once the user has paused for `refineDelayS`
(a stroke during that run waits for it: the worker cannot drop a run without losing its warm state), and Apply
always writes a full-resolution result (it computes one first if needed). Apply writes the
preview into the user's segments through the effect's `modifySegmentByLabelmap` (Slicer applies the editable area,
intensity range and overwrite settings there) after `saveStateForUndo` (Ctrl+Z restores the painting); Cancel
drops the preview. The preview already shows the masked result (`masking`), and painted slices keep exactly what
the user painted.

Support-case mode: a labelled volume of another patient (support volume + its segmentation) instead of painting;
runs on Update.

Arrays are Slicer's `(K, J, I)` masks on the source volume's grid; files to the worker go through the bridge
(`(I, J, K)`, RAS). Collaborators are injected (`util` = slicer.util, `scene` = slicer.mrmlScene, the effect, the
module logic) so stand-ins can replace them.
"""

from __future__ import annotations

import logging
import shutil
import time
from typing import Any, Callable

import numpy as np

from MultiModalGenLib import actions, bridge
from MultiModalGenLib.segment_info import PREVIEW_TAG, applySegmentInfo, baseName
from SegmentEditorMultiModalGenLib import effect_inputs, exchange, result_fields
from SegmentEditorMultiModalGenLib.masking import applySet, editableMask
from multimodalgen.errors import UserInputError

PREVIEW_ROLE = "MultiModalGenFewShotPreview"
#: Edge (voxels) of the quick preview crop (`multimodalgen.fewshot.session.PREVIEW_SIZE`; not imported: torch).
QUICK_EDGE = 128


class FewShotEffectLogic:
    """State machine of the effect: idle -> computing -> preview ready -> (Apply | Cancel) -> idle.

    Args:
        effect: the scripted effect (`qSlicerSegmentEditorScriptedEffect`): parameterSetNode(), saveStateForUndo(),
            modifySegmentByLabelmap(segmentationNode, segmentId, labelmap, mode).
        moduleLogic: the MultiModalGen module logic (runTask, poll, isBusy, runner), or a callable returning it.
        util, scene: slicer.util and slicer.mrmlScene (stand-ins in tests).
        newOrientedImage: factory of `slicer.vtkOrientedImageData` (labelmaps handed to modifySegmentByLabelmap).
        mutable: `vtk.mutable` (reads segment tags). modeSet: `qSlicerSegmentEditorAbstractEffect.ModificationModeSet`.
    """

    def __init__(self, effect, moduleLogic, util, scene, newOrientedImage: Callable[[], Any], mutable,
                 modeSet: int = 1, clock: Callable[[], float] = time.perf_counter):
        self.effect, self._moduleLogic, self._resolvedLogic = effect, moduleLogic, None
        self.util, self.scene, self.newOrientedImage, self.mutable = util, scene, newOrientedImage, mutable
        self.modeSet, self.clock = modeSet, clock
        self.extraVolumes: list = []
        self.mode = "slices"              # or "support"
        self.supportVolume = None
        self.supportSegmentation = None
        self.autoUpdate = True
        self.refine = True                # background full-resolution run after a pause
        self.refineDelayS = 1.5
        self.statusCallback: Callable[[str], None] | None = None
        self.timings: list[dict] = []     # one record per finished run (see _record)
        self.lastOutputs: dict = {}
        self.lastError = ""
        self._run: effect_inputs.Run | None = None
        self._pendingStroke: float | None = None
        self._dirty = False
        self._applying = False
        self._refineAt: float | None = None   # when to start the background full-resolution run
        self._quickOnly = False               # the preview is a quick crop of a larger volume
        self._lastStroke: float | None = None
        self._images = effect_inputs.ImageCache(util)

    # -- state ---------------------------------------------------------------------------------------------------
    @property
    def logic(self):
        """The module logic (resolved once: the effect polls it every few tens of milliseconds)."""
        if self._resolvedLogic is None:
            provider = self._moduleLogic
            self._resolvedLogic = provider if hasattr(provider, "runTask") else provider()
        return self._resolvedLogic

    @property
    def state(self) -> str:
        if self._run is not None:
            return "computing"
        preview = self.previewNode(create=False)
        return "preview" if preview is not None and preview.GetSegmentation().GetNumberOfSegments() else "idle"

    def _editor(self):
        editor = self.effect.parameterSetNode()
        segmentationNode = editor.GetSegmentationNode() if editor is not None else None
        source = editor.GetSourceVolumeNode() if editor is not None else None
        if segmentationNode is None or source is None:
            raise UserInputError("the few-shot effect needs a segmentation and a source volume",
                                 fix="select both at the top of the Segment Editor")
        return editor, segmentationNode, source

    def _status(self, text: str) -> None:
        if self.statusCallback is not None:
            self.statusCallback(text)

    # -- requests ------------------------------------------------------------------------------------------------
    def onSegmentationModified(self, *args) -> None:
        """Observer of the segmentation's SegmentModified / SegmentRemoved events (a stroke)."""
        if self._applying or not self.autoUpdate or self.mode != "slices":
            return
        self._pendingStroke = self._lastStroke = self.clock()
        self._refineAt = None
        if self._run is not None or self.logic.isBusy():
            self._dirty = True
        else:
            self._safeStart("quick")

    def requestUpdate(self) -> None:
        """Compute a preview of the current painting now, or right after the running one."""
        self._pendingStroke = self._lastStroke = self.clock()
        self._refineAt = None
        if self._run is not None or self.logic.isBusy():
            self._dirty = True
            return
        self._start("support" if self.mode == "support" else "quick")

    def poll(self) -> None:
        """Deliver worker events (the effect's QTimer calls this while computing); starts a deferred run."""
        self.logic.poll()
        if self._run is not None or self.logic.isBusy():
            return
        if self._dirty:
            self._safeStart("support" if self.mode == "support" else "quick")
        elif self._refineAt is not None and self.clock() >= self._refineAt:
            self._refineAt = None
            self._pendingStroke = self._lastStroke
            self._safeStart("full")

    def waitUntilIdle(self, timeout: float = 300.0, tick: Callable[[], None] | None = None) -> None:
        """Block until no run is in flight or pending (Apply, scripts, tests)."""
        deadline = time.monotonic() + timeout
        while self._run is not None or self._dirty:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the few-shot preview did not finish within {timeout} s")
            self.poll()
            if tick is not None:
                tick()
            time.sleep(0.005)

    # -- running -------------------------------------------------------------------------------------------------
    def _start(self, kind: str) -> None:
        editor, segmentationNode, source = self._editor()
        stroke = self._pendingStroke if self._pendingStroke is not None else self.clock()
        self._pendingStroke, self._dirty = None, False
        t0 = self.clock()
        folder = actions.newExchangeFolder()
        try:
            if kind == "support":
                params, run = effect_inputs.supportParams(
                    self.util, self.mutable, self._images, editor, segmentationNode, source, self.supportVolume,
                    self.supportSegmentation, folder, stroke, self._suffix())
            else:
                params, run = effect_inputs.paintingParams(
                    self.util, self.mutable, self._images, editor, segmentationNode, source, self.extraVolumes,
                    folder, stroke, kind, self._suffix())
        except Exception:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        run.exportS = self.clock() - t0
        run.submitted = self.clock()
        self._run = run
        try:
            self.logic.runTask("fewshot", params, wait=False, onFinished=self._onFinished, folder=folder,
                               importResult=lambda outputs: self._importResult(run, outputs))
        except Exception:  # not started (e.g. a panel task is running): nothing will clean the folder but us
            self._run = None
            shutil.rmtree(folder, ignore_errors=True)
            raise
        self._status("computing the 3D preview..." if kind != "full" else "refining at full resolution...")

    def _suffix(self) -> str:
        """Exchange files: uncompressed NIfTI with a local worker (gzip costs ~1 s per 256^3 label map each way),
        compressed for a remote server (upload size)."""
        return ".nii" if self.logic.settings.backend == "local" else ".nii.gz"

    # -- results -------------------------------------------------------------------------------------------------
    def _importResult(self, run: effect_inputs.Run, outputs: dict):
        """Runs on the main thread when the worker answered: result -> masked preview segments."""
        received = self.clock()
        if run.discard:
            return None
        from multimodalgen.worker import protocol

        shape = tuple(int(d) for d in reversed(run.referenceVolume.GetImageData().GetDimensions()))
        labelKJI = exchange.readSlicerLabel(protocol.require_file({"ref": outputs["segmentation"]}, "ref"),
                                            run.affine, shape)
        preview = self.previewNode(create=True, reference=run.referenceVolume)
        segmentation = preview.GetSegmentation()
        painted = self._paintedSlices(run, outputs) if run.kind != "support" else []
        for n, previewId in enumerate(run.segmentIds):
            predicted = labelKJI == (n + 1)
            target = run.targets[previewId]
            old = run.masks.get(target) if target else None
            old = np.zeros(labelKJI.shape, bool) if old is None else old
            for index in painted:  # painted slices keep exactly what the user painted
                predicted[index] = old[index]
            editable = editableMask(run.settings, target or "", run.masks, run.visible, run.sourceArray)
            final = applySet(predicted, old, editable)
            if not segmentation.GetSegment(previewId):
                segmentation.AddEmptySegment(previewId, run.infos[previewId]["name"],
                                             list(run.infos[previewId]["color"]))
            applySegmentInfo(segmentation.GetSegment(previewId), run.infos[previewId], preview=True)
            self.util.updateSegmentBinaryLabelmapFromArray(final, preview, previewId, run.referenceVolume)
        for n in reversed(range(segmentation.GetNumberOfSegments())):
            if segmentation.GetNthSegmentID(n) not in run.segmentIds:
                segmentation.RemoveSegment(segmentation.GetNthSegmentID(n))
        self._targets = dict(run.targets)
        self._infos = dict(run.infos)
        self.lastOutputs = outputs
        self._record(run, outputs, received)
        return preview

    @staticmethod
    def _paintedSlices(run: effect_inputs.Run, outputs: dict) -> list[tuple]:
        """`(K, J, I)` index tuples of the slices the engine treated as painted (a slice painted with any segment
        is the user's answer for every segment): the engine's reported axes, else the backend's axis rule."""
        axes = outputs.get("axes") or (outputs.get("report") or {}).get("axes")
        if not axes:
            union = np.any([run.masks[s] for s in run.segmentIds], axis=0)
            axis, slices = bridge.annotatedSlices(union.transpose(2, 1, 0), affine=run.affine)
            axes = [{"axis": axis, "slices": slices}]
        out = []
        for item in axes:
            index = [slice(None)] * 3
            index[2 - int(item["axis"])] = [int(v) for v in item["slices"]]  # voxel axis i, j, k -> array axis
            out.append(tuple(index))
        return out

    def _record(self, run: effect_inputs.Run, outputs: dict, received: float) -> None:
        seconds = (outputs.get("report") or {}).get("seconds") or {}
        engine = (outputs.get("timings") or {}).get("engine", seconds.get("total"))
        done = self.clock()
        self.timings.append({"kind": run.kind, "warm": bool(outputs.get("warm")), "export_s": run.exportS,
                             "worker_s": received - run.submitted,
                             "engine_s": float(engine) if engine is not None else None,
                             "import_s": done - received, "stroke_to_preview_s": done - run.strokeTime})

    def _onFinished(self, result, error) -> None:
        run, self._run = self._run, None
        if run is None or run.discard:
            pass
        elif error is not None:
            self.lastError = error["message"]
            self._status(("stopped: " if error.get("kind") == "cancelled" else "few-shot failed: ") + error["message"])
        else:
            self.lastError = ""
            self._status(self.describe())
            dims = run.referenceVolume.GetImageData().GetDimensions()
            self._quickOnly = run.kind == "quick" and max(dims) > QUICK_EDGE
            if self._quickOnly and self.refine and not self._dirty:
                self._refineAt = self.clock() + self.refineDelayS
        if self._dirty and not self.logic.isBusy():
            self._safeStart("support" if self.mode == "support" else "quick")

    def _safeStart(self, kind: str) -> None:
        """Start from an event (stroke, timer, finished run): problems become the status text, not exceptions."""
        try:
            self._start(kind)
        except UserInputError as exc:
            self.lastError = str(exc)
            self._status(str(exc))
        except Exception as exc:  # noqa: BLE001 - e.g. the worker cannot start: shown, logged, never raised into VTK
            logging.exception("MultiModalGen few-shot: the update could not start")
            self.lastError = f"{type(exc).__name__}: {exc}"
            self._status("few-shot failed: " + self.lastError)

    def describe(self) -> str:
        """Status text: what the preview holds, its timing and optional engine fields (confidence...)."""
        if not self.timings:
            return "paint a few slices of one or more segments; the 3D preview follows each stroke"
        t = self.timings[-1]
        engine = f", engine {t['engine_s']:.2f} s" if t["engine_s"] is not None else ""
        text = (f"{'quick ' if t['kind'] == 'quick' else ''}preview in {t['stroke_to_preview_s']:.2f} s{engine}; "
                "Apply to accept, Cancel to discard")
        names = {int(i["label"]): i["name"] for i in getattr(self, "_infos", {}).values()}
        extra = result_fields.describe(self.lastOutputs, names)
        return text + ("\n" + extra if extra else "")

    # -- preview node, apply, cancel -----------------------------------------------------------------------------
    def previewNode(self, create: bool = False, reference=None):
        """The preview segmentation paired with the editor's segmentation (node reference PREVIEW_ROLE)."""
        editor = self.effect.parameterSetNode()
        segmentationNode = editor.GetSegmentationNode() if editor is not None else None
        if segmentationNode is None:
            return None
        preview = segmentationNode.GetNodeReference(PREVIEW_ROLE)
        if preview is None and create:
            preview = self.scene.AddNewNodeByClass("vtkMRMLSegmentationNode",
                                                   segmentationNode.GetName() + " few-shot preview")
            preview.CreateDefaultDisplayNodes()
            preview.GetDisplayNode().SetOpacity(0.6)
            preview.SetAttribute(PREVIEW_TAG, "1")
            preview.SetAndObserveTransformNodeID(segmentationNode.GetTransformNodeID())
            if reference is not None:
                preview.SetReferenceImageGeometryParameterFromVolumeNode(reference)
            segmentationNode.SetNodeReferenceID(PREVIEW_ROLE, preview.GetID())
        return preview

    def apply(self, tick: Callable[[], None] | None = None) -> list[str]:
        """Write the preview into the user's segments (undoable; masking applied by the effect). Returns the
        target segment ids."""
        if self._run is not None or self._dirty:
            self.waitUntilIdle(tick=tick)
        if self._quickOnly and self.state == "preview":  # the quick crop is not the answer: compute the full one
            self._refineAt = None
            self._pendingStroke = self._lastStroke
            self._start("full")
            self.waitUntilIdle(tick=tick)
        preview = self.previewNode(create=False)
        if preview is None or preview.GetSegmentation().GetNumberOfSegments() == 0:
            raise UserInputError("there is no preview to apply", fix="paint a few slices (or click Update) first")
        _editor, segmentationNode, _source = self._editor()
        target = segmentationNode.GetSegmentation()
        previewSegmentation = preview.GetSegmentation()
        written = []
        self._applying = True
        try:
            self.effect.saveStateForUndo()
            for n in range(previewSegmentation.GetNumberOfSegments()):
                previewId = previewSegmentation.GetNthSegmentID(n)
                targetId = getattr(self, "_targets", {}).get(previewId, previewId)
                if not targetId or not target.GetSegment(targetId):
                    info = self._infos[previewId]
                    targetId = target.AddEmptySegment("", baseName(info["name"]), list(info["color"]))
                    applySegmentInfo(target.GetSegment(targetId), info)
                labelmap = self.newOrientedImage()
                preview.GetBinaryLabelmapRepresentation(previewId, labelmap)
                self.effect.modifySegmentByLabelmap(segmentationNode, targetId, labelmap, self.modeSet)
                written.append(targetId)
        finally:
            self._applying = False
        self._removePreview()
        self._status(f"applied to {len(written)} segment(s); Ctrl+Z undoes")
        return written

    def cancel(self) -> None:
        """Drop the preview (the running computation finishes in the worker, its result is ignored)."""
        if self._run is not None:
            self._run.discard = True
        self._dirty = self._quickOnly = False
        self._pendingStroke = self._refineAt = None
        self._removePreview()
        self._status("preview discarded")

    def _removePreview(self) -> None:
        preview = self.previewNode(create=False)
        if preview is not None:
            editor = self.effect.parameterSetNode()
            editor.GetSegmentationNode().SetNodeReferenceID(PREVIEW_ROLE, None)
            self.scene.RemoveNode(preview)

    def cleanup(self) -> None:
        """Effect deactivated / scene closed: drop the preview and the cached image files."""
        self.cancel()
        self._images.clear()
