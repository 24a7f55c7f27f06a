"""Stand-ins for the Segment Editor objects a scripted effect talks to, with Slicer's behaviour (outside Slicer).

- `SegmentEditorNode` mimics `vtkMRMLSegmentEditorNode` (Libs/MRML/Core/vtkMRMLSegmentEditorNode.h): segmentation,
  source volume, masking settings and their enums.
- `ScriptedEffect` mimics `qSlicerSegmentEditorScriptedEffect` / `qSlicerSegmentEditorAbstractEffect`
  (Modules/Loadable/Segmentations/EditorEffects): `parameterSetNode()`, `saveStateForUndo()` and
  `modifySegmentByLabelmap(segmentationNode, segmentId, labelmap, mode)`, which applies the editable area, the
  intensity range and the overwrite mode the way Slicer's C++ does (implemented here independently of the effect's
  own `masking` module, so the tests compare two implementations). `undo()` restores the last saved state, like
  Ctrl+Z in the Segment Editor (`vtkSegmentationHistory::RestorePreviousState`).
- `LogicStandIn` mimics the task API of `MultiModalGen.MultiModalGenLogic` (runTask / poll / isBusy / cancel) over
  the real `TaskRunner` and worker, since MultiModalGen.py itself needs Slicer.
- `TimedUtil` wraps the `slicer.util` stand-in and records the seconds spent in each call (timing hooks for the
  benchmark: Slicer-side array transfer cost, kept apart from the engine's time).
"""

from __future__ import annotations

import collections
import time

import numpy as np
import slicer_standins as sx


class SegmentEditorNode(sx.NodeBase):
    """`vtkMRMLSegmentEditorNode` stand-in (getters/setters and enum values of the masking settings)."""

    className = "vtkMRMLSegmentEditorNode"
    (PaintAllowedEverywhere, PaintAllowedInsideAllSegments, PaintAllowedInsideVisibleSegments,
     PaintAllowedOutsideAllSegments, PaintAllowedOutsideVisibleSegments, PaintAllowedInsideSingleSegment) = range(6)
    OverwriteAllSegments, OverwriteVisibleSegments, OverwriteNone = range(3)

    def __init__(self, segmentationNode, sourceVolumeNode, name="SegmentEditor"):
        self.name = name
        self.segmentationNode, self.sourceVolumeNode = segmentationNode, sourceVolumeNode
        self.maskMode, self.maskSegmentId = self.PaintAllowedEverywhere, ""
        self.intensityMask, self.intensityRange = False, (0.0, 0.0)
        self.overwriteMode = self.OverwriteAllSegments
        sx.SCENE.add(self)

    def GetSegmentationNode(self):
        return self.segmentationNode

    def GetSourceVolumeNode(self):
        return self.sourceVolumeNode

    def GetMaskMode(self):
        return self.maskMode

    def SetMaskMode(self, mode):
        self.maskMode = mode

    def GetMaskSegmentID(self):
        return self.maskSegmentId

    def SetMaskSegmentID(self, segId):
        self.maskSegmentId = segId

    def GetSourceVolumeIntensityMask(self):
        return self.intensityMask

    def SetSourceVolumeIntensityMask(self, on):
        self.intensityMask = bool(on)

    def GetSourceVolumeIntensityMaskRange(self):
        return self.intensityRange

    def SetSourceVolumeIntensityMaskRange(self, low, high):
        self.intensityRange = (float(low), float(high))

    def GetOverwriteMode(self):
        return self.overwriteMode

    def SetOverwriteMode(self, mode):
        self.overwriteMode = mode


class ScriptedEffect:
    """`qSlicerSegmentEditorScriptedEffect` stand-in: parameter set node, undo states, masked labelmap writes."""

    ModificationModeSet, ModificationModeAdd, ModificationModeRemove = range(3)

    def __init__(self, editorNode):
        self.editorNode = editorNode
        self.undoStack: list[dict] = []
        self.modifications: list[tuple[str, int]] = []

    def parameterSetNode(self):
        return self.editorNode

    def saveStateForUndo(self):
        segmentation = self.editorNode.GetSegmentationNode().GetSegmentation()
        self.undoStack.append({"order": list(segmentation.order), "segments": dict(segmentation.segments),
                               "masks": {k: np.array(v) for k, v in segmentation.masks.items()}})

    def undo(self):
        """Ctrl+Z: restore the segmentation as it was at the last saveStateForUndo."""
        state = self.undoStack.pop()
        segmentation = self.editorNode.GetSegmentationNode().GetSegmentation()
        segmentation.order, segmentation.segments, segmentation.masks = state["order"], state["segments"], \
            state["masks"]

    def _editable(self, segNode, segId, shape):
        node = self.editorNode
        segmentation = segNode.GetSegmentation()
        display = segNode.GetDisplayNode()
        others = [s for s in segmentation.order if s != segId]

        def union(ids):
            out = np.zeros(shape, bool)
            for s in ids:
                if s in segmentation.masks:
                    out |= segmentation.masks[s] > 0
            return out

        visible = [s for s in others if display.GetSegmentVisibility(s)]
        mode = node.GetMaskMode()
        allowed = {node.PaintAllowedEverywhere: lambda: np.ones(shape, bool),
                   node.PaintAllowedInsideAllSegments: lambda: union(others),
                   node.PaintAllowedInsideVisibleSegments: lambda: union(visible),
                   node.PaintAllowedOutsideAllSegments: lambda: ~union(others),
                   node.PaintAllowedOutsideVisibleSegments: lambda: ~union(visible),
                   node.PaintAllowedInsideSingleSegment: lambda: union([node.GetMaskSegmentID()])}[mode]()
        if node.GetSourceVolumeIntensityMask():
            low, high = node.GetSourceVolumeIntensityMaskRange()
            voxels = node.GetSourceVolumeNode().kji
            allowed &= (voxels >= low) & (voxels <= high)
        return allowed

    def modifySegmentByLabelmap(self, segNode, segId, labelmap, mode):
        new = np.asarray(labelmap.mask) > 0
        segmentation = segNode.GetSegmentation()
        old = segmentation.masks.get(segId)
        old = np.zeros(new.shape, bool) if old is None else old > 0
        allowed = self._editable(segNode, segId, new.shape)
        if mode == self.ModificationModeSet:
            result = np.where(allowed, new, old)
        elif mode == self.ModificationModeAdd:
            result = old | (new & allowed)
        else:
            result = old & ~(new & allowed)
        segmentation.masks[segId] = result.astype(np.uint8)
        if mode != self.ModificationModeRemove:  # overwrite: the written voxels leave the other segments
            node, display = self.editorNode, segNode.GetDisplayNode()
            erase = new & allowed
            for other in [s for s in segmentation.order if s != segId and s in segmentation.masks]:
                if node.GetOverwriteMode() == node.OverwriteAllSegments or (
                        node.GetOverwriteMode() == node.OverwriteVisibleSegments
                        and display.GetSegmentVisibility(other)):
                    segmentation.masks[other] = (segmentation.masks[other] > 0) & ~erase
        self.modifications.append((segId, mode))
        segmentation.InvokeEvent(segmentation.SegmentModified)


class LogicStandIn:
    """The task API of `MultiModalGenLogic` (MultiModalGen.py: settings, runTask, poll, isBusy, cancel) over a real
    `TaskRunner` (and so a real worker process)."""

    def __init__(self, runner):
        self.runner = runner

    def runTask(self, task, params, wait=True, onFinished=None, importResult=None, folder=None, onEvent=None):
        return self.runner.run(task, params, importResult or (lambda outputs: outputs), wait=wait,
                               onFinished=onFinished, folder=folder, onEvent=onEvent)

    @property
    def settings(self):
        return self.runner.settings

    def poll(self):
        self.runner.poll()

    def isBusy(self):
        return self.runner.isBusy()

    def cancel(self):
        return self.runner.cancel()


class TimedUtil:
    """Timing hooks: the `slicer.util` stand-in with the seconds of every call summed per name in `seconds`."""

    def __init__(self, util=sx.Util):
        self._util = util
        self.seconds: dict[str, float] = collections.defaultdict(float)
        self.calls: dict[str, int] = collections.defaultdict(int)

    def __getattr__(self, name):
        target = getattr(self._util, name)
        if not callable(target):
            return target

        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return target(*args, **kwargs)
            finally:
                self.seconds[name] += time.perf_counter() - t0
                self.calls[name] += 1

        return timed

    def reset(self):
        self.seconds.clear()
        self.calls.clear()


def paint(segmentationNode, segId, maskKJI):
    """A stroke: set a segment's labelmap and fire vtkSegmentation::SegmentModified, as the Paint effect does."""
    segmentation = segmentationNode.GetSegmentation()
    segmentation.masks[segId] = np.asarray(maskKJI).astype(np.uint8)
    segmentation.InvokeEvent(segmentation.SegmentModified)
