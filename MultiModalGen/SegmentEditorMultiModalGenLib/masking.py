"""The Segment Editor's masking rules as numpy functions (no Slicer import), so the few-shot preview shows exactly
what Apply will write.

Slicer applies these rules itself when an effect calls `qSlicerSegmentEditorAbstractEffect::modifySegmentByLabelmap`
(C++: `vtkSlicerSegmentationsModuleLogic::GenerateEditMask` + the overwrite handling of `ModifyBinaryLabelmap`);
the few-shot effect's Apply goes through that call, so in Slicer the rules below are applied twice with the same
result (idempotent). They follow `vtkMRMLSegmentEditorNode`:

- mask mode (`GetMaskMode()`, "Editable area"): everywhere; inside / outside all segments; inside / outside visible
  segments; inside one segment (`GetMaskSegmentID()`). "All / visible segments" never include the segment being
  edited itself.
- intensity range (`GetSourceVolumeIntensityMask()`, `GetSourceVolumeIntensityMaskRange()`): only voxels whose
  source-volume value lies in [low, high] (inclusive) are editable.
- overwrite (`GetOverwriteMode()`): where a segment is set, other segments (all / visible / none) are erased.

Arrays are Slicer's `(K, J, I)` masks on the source volume's grid; any consistent axis order works.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from multimodalgen.errors import UserInputError

#: `vtkMRMLSegmentEditorNode` mask modes, by the names of its C++ enum (values in `MASK_MODES` order).
MASK_MODES = ("PaintAllowedEverywhere", "PaintAllowedInsideAllSegments", "PaintAllowedInsideVisibleSegments",
              "PaintAllowedOutsideAllSegments", "PaintAllowedOutsideVisibleSegments",
              "PaintAllowedInsideSingleSegment")
#: `vtkMRMLSegmentEditorNode` overwrite modes (C++ enum order).
OVERWRITE_MODES = ("OverwriteAllSegments", "OverwriteVisibleSegments", "OverwriteNone")


@dataclass(frozen=True)
class MaskSettings:
    """The editor's masking settings, read once from the segment editor node (see `fromEditorNode`)."""

    maskMode: str = "PaintAllowedEverywhere"
    maskSegmentId: str = ""
    intensityMask: bool = False
    intensityRange: tuple[float, float] = (0.0, 0.0)
    overwriteMode: str = "OverwriteAllSegments"

    def __post_init__(self):
        if self.maskMode not in MASK_MODES:
            raise UserInputError("unknown editable-area mode", expected=", ".join(MASK_MODES), got=self.maskMode)
        if self.overwriteMode not in OVERWRITE_MODES:
            raise UserInputError("unknown overwrite mode", expected=", ".join(OVERWRITE_MODES),
                                 got=self.overwriteMode)

    @classmethod
    def fromEditorNode(cls, editorNode) -> "MaskSettings":
        """Read a `vtkMRMLSegmentEditorNode` (or a stand-in with the same getters and enum attributes)."""
        def name(value, names):
            return next((n for n in names if getattr(editorNode, n, None) == value), names[0])

        low, high = editorNode.GetSourceVolumeIntensityMaskRange()
        return cls(maskMode=name(editorNode.GetMaskMode(), MASK_MODES),
                   maskSegmentId=editorNode.GetMaskSegmentID() or "",
                   intensityMask=bool(editorNode.GetSourceVolumeIntensityMask()),
                   intensityRange=(float(low), float(high)),
                   overwriteMode=name(editorNode.GetOverwriteMode(), OVERWRITE_MODES))


def editableMask(settings: MaskSettings, editedSegmentId: str, segmentMasks: dict[str, np.ndarray],
                 visibleSegmentIds: set[str], sourceArray: np.ndarray | None = None) -> np.ndarray | None:
    """Boolean mask of the voxels `editedSegmentId` may change, or None when every voxel is editable.

    segmentMasks: every segment's current mask (same shape), used by the inside/outside modes.
    sourceArray: the source volume's voxels (needed only for the intensity range).
    """
    others = {sid: m for sid, m in segmentMasks.items() if sid != editedSegmentId}
    shape = next(iter(segmentMasks.values())).shape if segmentMasks else (
        None if sourceArray is None else sourceArray.shape)
    mode = settings.maskMode

    def union(ids):
        out = np.zeros(shape, bool)
        for sid in ids:
            out |= np.asarray(others[sid]) > 0
        return out

    if mode == "PaintAllowedEverywhere":
        mask = None
    elif mode == "PaintAllowedInsideAllSegments":
        mask = union(others)
    elif mode == "PaintAllowedInsideVisibleSegments":
        mask = union([s for s in others if s in visibleSegmentIds])
    elif mode == "PaintAllowedOutsideAllSegments":
        mask = ~union(others)
    elif mode == "PaintAllowedOutsideVisibleSegments":
        mask = ~union([s for s in others if s in visibleSegmentIds])
    else:  # PaintAllowedInsideSingleSegment
        if settings.maskSegmentId not in segmentMasks:
            raise UserInputError("the editable area names a segment that does not exist",
                                 expected="an existing segment", got=repr(settings.maskSegmentId),
                                 fix="choose the segment under Masking > Editable area")
        mask = np.asarray(segmentMasks[settings.maskSegmentId]) > 0
    if settings.intensityMask:
        if sourceArray is None:
            raise UserInputError("the intensity range needs the source volume", fix="select a source volume")
        low, high = settings.intensityRange
        inRange = (sourceArray >= low) & (sourceArray <= high)
        mask = inRange if mask is None else (mask & inRange)
    return mask


def applySet(newMask: np.ndarray, oldMask: np.ndarray, editable: np.ndarray | None) -> np.ndarray:
    """`ModificationModeSet` under a mask: the new mask where editable, the old one elsewhere (uint8)."""
    new = np.asarray(newMask) > 0
    if editable is not None:
        new = np.where(editable, new, np.asarray(oldMask) > 0)
    return new.astype(np.uint8)


def overwrittenSegmentIds(settings: MaskSettings, editedSegmentId: str, segmentIds, visibleSegmentIds) -> list[str]:
    """The other segments from which the edited segment's voxels are erased (per the overwrite mode)."""
    if settings.overwriteMode == "OverwriteNone":
        return []
    others = [s for s in segmentIds if s != editedSegmentId]
    if settings.overwriteMode == "OverwriteVisibleSegments":
        return [s for s in others if s in visibleSegmentIds]
    return others
