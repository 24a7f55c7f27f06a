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

import dataclasses
import pathlib
import shutil
import tempfile
import time
from typing import Any, Callable

import numpy as np

from MultiModalGenLib import actions, bridge
from MultiModalGenLib.segment_info import PREVIEW_TAG, applySegmentInfo, baseName, segmentInfo
from SegmentEditorMultiModalGenLib import exchange, result_fields
from SegmentEditorMultiModalGenLib.masking import MaskSettings, applySet, editableMask
from multimodalgen.errors import UserInputError

PREVIEW_ROLE = "MultiModalGenFewShotPreview"
#: Edge (voxels) of the quick preview crop (`multimodalgen.fewshot.session.PREVIEW_SIZE`; not imported: torch).
QUICK_EDGE = 128


@dataclasses.dataclass
class _Run:
    kind: str                       # "quick", "full" or "support"
    strokeTime: float
    segmentIds: list[str]           # preview segment ids, label value n+1 each
    targets: dict[str, str | None]  # preview id -> target segment id (None: created on Apply)
    infos: dict[str, dict]          # preview id -> segment info (name, colour, terminology)
    masks: dict[str, np.ndarray]    # target segments' current masks (K, J, I) bool
    visible: set[str]
    settings: MaskSettings
    sourceArray: np.ndarray | None
    referenceVolume: Any
    affine: np.ndarray              # the source volume's voxel (i, j, k) -> RAS (incl. a linear parent transform)
    exportS: float = 0.0
    submitted: float = 0.0
    discard: bool = False


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
        self.effect, self._moduleLogic = effect, moduleLogic
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
        self._run: _Run | None = None
        self._pendingStroke: float | None = None
        self._dirty = False
        self._applying = False
        self._refineAt: float | None = None   # when to start the background full-resolution run
        self._quickOnly = False               # the preview is a quick crop of a larger volume
        self._lastStroke: float | None = None
        self._imageCache: dict[tuple, dict] = {}
        self._cacheFolder: pathlib.Path | None = None

    # -- state ---------------------------------------------------------------------------------------------------
    @property
    def logic(self):
        return self._moduleLogic() if callable(self._moduleLogic) and not hasattr(self._moduleLogic, "runTask") \
            else self._moduleLogic

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
        """Observer of the segmentation's SegmentModified/Added/Removed events (a stroke)."""
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
                params, run = self._supportParams(editor, segmentationNode, source, folder, stroke)
            else:
                params, run = self._paintingParams(editor, segmentationNode, source, folder, stroke, kind)
        except Exception:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        run.exportS = self.clock() - t0
        run.submitted = self.clock()
        self._run = run
        try:
            self.logic.runTask("fewshot", params, wait=False, onFinished=self._onFinished, folder=folder,
                               importResult=lambda outputs: self._importResult(run, outputs))
        except Exception:
            self._run = None
            raise
        self._status("computing the 3D preview..." if kind != "full" else "refining at full resolution...")

    def _segmentsState(self, segmentationNode, reference, settings: MaskSettings):
        """(segment ids, visible ids, {id: mask (K, J, I) bool}). Masks are read for the visible segments, and for
        hidden ones only when the editable area depends on them (each read is a labelmap export in Slicer)."""
        segmentation = segmentationNode.GetSegmentation()
        ids = [segmentation.GetNthSegmentID(n) for n in range(segmentation.GetNumberOfSegments())]
        display = segmentationNode.GetDisplayNode()
        visible = {s for s in ids if display is None or display.GetSegmentVisibility(s)}
        hiddenNeeded = settings.maskMode in ("PaintAllowedInsideAllSegments", "PaintAllowedOutsideAllSegments")
        shape = tuple(int(d) for d in reversed(reference.GetImageData().GetDimensions()))
        masks = {}
        for segmentId in ids:
            if segmentId in visible or hiddenNeeded or segmentId == settings.maskSegmentId:
                mask = self.util.arrayFromSegmentBinaryLabelmap(segmentationNode, segmentId, reference)
                masks[segmentId] = np.zeros(shape, bool) if mask is None else np.asarray(mask) > 0
        return ids, visible, masks

    def _maskInputs(self, editor, source):
        settings = MaskSettings.fromEditorNode(editor)
        sourceArray = np.asarray(self.util.arrayFromVolume(source)) if settings.intensityMask else None
        return settings, sourceArray

    def _paintingParams(self, editor, segmentationNode, source, folder, stroke, kind):
        settings, sourceArray = self._maskInputs(editor, source)
        ids, visible, masks = self._segmentsState(segmentationNode, source, settings)
        painted = [s for s in ids if s in visible and masks[s].any()]
        if not painted:
            raise UserInputError("nothing painted yet", expected="a few painted slices of at least one visible "
                                 "segment", fix="paint the structure on 2-5 slices with Paint, Draw or Threshold")
        labelKJI = np.zeros(masks[painted[0]].shape, np.uint8 if len(painted) < 255 else np.uint16)
        segmentation = segmentationNode.GetSegmentation()
        infos = {}
        for n, segmentId in enumerate(painted):
            labelKJI[masks[segmentId]] = n + 1
            infos[segmentId] = segmentInfo(segmentation.GetSegment(segmentId), n + 1, self.mutable)
        affine = bridge.nodeAffine(source, self.util)
        annotation = exchange.writeSlicerArray(labelKJI, affine, pathlib.Path(folder) / ("annotation" + self._suffix()),
                                               compress=self._suffix() == ".nii.gz")
        volumes = [source] + [v for v in self.extraVolumes if v is not None and v is not source]
        params = {"images": [self._imageRef(v) for v in volumes], "annotation": {"file": str(annotation)},
                  "image_id": "|".join(f"{v.GetID()}:{v.GetImageData().GetMTime()}" for v in volumes),
                  "preview": kind == "quick", "segments": list(infos.values()), "output_suffix": self._suffix()}
        run = _Run(kind, stroke, painted, {s: s for s in painted}, infos, masks, visible, settings, sourceArray,
                   source, affine)
        return params, run

    def _supportParams(self, editor, segmentationNode, source, folder, stroke):
        if self.supportVolume is None or self.supportSegmentation is None:
            raise UserInputError("support-case mode needs a labelled case", expected="a support volume and its "
                                 "segmentation", fix="pick both under 'Support case' in the effect's options")
        labelRef, segments = actions.exportSegments(self.supportSegmentation, self.supportVolume, folder,
                                                    "support_labels")
        supportSegmentation = self.supportSegmentation.GetSegmentation()
        for s in segments:
            s.update(segmentInfo(supportSegmentation.GetSegment(s["id"]), s["label"], self.mutable))
        settings, sourceArray = self._maskInputs(editor, source)
        ids, visible, masks = self._segmentsState(segmentationNode, source, settings)
        target = segmentationNode.GetSegmentation()
        previewIds, targets, infos = [], {}, {}
        for s in segments:
            previewId = f"support_{s['label']}"
            previewIds.append(previewId)
            targets[previewId] = target.GetSegmentIdBySegmentName(s["name"]) or None
            infos[previewId] = {k: s[k] for k in ("label", "name", "color", "terminology")}
        params = {"support_images": [[self._imageRef(self.supportVolume)]], "support_labels": [labelRef],
                  "images": [self._imageRef(source)], "segments": list(infos.values())}
        return params, _Run("support", stroke, previewIds, targets, infos, masks, visible, settings, sourceArray,
                            source, bridge.nodeAffine(source, self.util))

    def _suffix(self) -> str:
        """Exchange files: uncompressed NIfTI with a local worker (gzip costs ~1 s per 256^3 label map each way),
        compressed for a remote server (upload size)."""
        return ".nii" if self.logic.settings.backend == "local" else ".nii.gz"

    def _imageRef(self, node) -> dict:
        """The node's voxels as a file for the worker, written once per (node, image version) and reused."""
        key = (node.GetID(), node.GetImageData().GetMTime())
        ref = self._imageCache.get(key)
        if ref is None or not pathlib.Path(ref["file"]).is_file():
            if self._cacheFolder is None:
                self._cacheFolder = pathlib.Path(tempfile.mkdtemp(prefix="mmg-effect-"))
            name, suffix = f"image{len(self._imageCache)}", self._suffix()
            array = np.asarray(self.util.arrayFromVolume(node))
            if array.ndim == 3:  # scalar volume: written as is, no axis reordering
                path = exchange.writeSlicerArray(array, bridge.nodeAffine(node, self.util),
                                                 self._cacheFolder / (name + suffix), compress=suffix == ".nii.gz")
                ref = {"file": str(path)}
            else:
                ref = actions.exportVolume(node, self._cacheFolder, name, suffix=suffix)
            self._imageCache[key] = ref
        return ref

    # -- results -------------------------------------------------------------------------------------------------
    def _importResult(self, run: _Run, outputs: dict):
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
        painted = None
        if run.kind != "support":  # a slice painted with any segment is the user's answer for every segment
            union = np.any([run.masks[s] for s in run.segmentIds], axis=0)
            axis, slices = bridge.annotatedSlices(union)
            painted = [slice(None)] * 3
            painted[axis] = slices
            painted = tuple(painted)
        for n, previewId in enumerate(run.segmentIds):
            predicted = labelKJI == (n + 1)
            target = run.targets[previewId]
            old = run.masks.get(target) if target else None
            old = np.zeros(labelKJI.shape, bool) if old is None else old
            if painted is not None:  # painted slices keep exactly what the user painted
                predicted[painted] = old[painted]
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

    def _record(self, run: _Run, outputs: dict, received: float) -> None:
        seconds = (outputs.get("report") or {}).get("seconds") or {}
        done = self.clock()
        self.timings.append({"kind": run.kind, "warm": bool(outputs.get("warm")), "export_s": run.exportS,
                             "worker_s": received - run.submitted,
                             "engine_s": float(seconds["total"]) if "total" in seconds else None,
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
        if self._cacheFolder is not None:
            shutil.rmtree(self._cacheFolder, ignore_errors=True)
        self._cacheFolder, self._imageCache = None, {}
