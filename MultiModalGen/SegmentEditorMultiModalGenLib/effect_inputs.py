"""Inputs of one few-shot effect run: the painting (or the support case) and the editor state, as worker params.

Reads segments as Slicer's `(K, J, I)` masks on the source volume's grid (`util.arrayFromSegmentBinaryLabelmap`),
writes the painted label map (segment n -> label n + 1) and the images with `exchange` (no axis reordering), and
returns a `Run` that remembers what the result must be merged with (current masks, masking settings, targets).
"""

from __future__ import annotations

import dataclasses
import pathlib
import shutil
import tempfile
from typing import Any

import numpy as np

from MultiModalGenLib import actions, bridge
from MultiModalGenLib.segment_info import segmentInfo
from SegmentEditorMultiModalGenLib import exchange
from SegmentEditorMultiModalGenLib.masking import MaskSettings
from multimodalgen.errors import UserInputError


@dataclasses.dataclass
class Run:
    """One submitted run: what the worker's result is merged with when it arrives."""

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


class ImageCache:
    """Each volume's voxels as a file for the worker, written once per (node, image version) and reused."""

    def __init__(self, util):
        self.util = util
        self.refs: dict[tuple, dict] = {}
        self.folder: pathlib.Path | None = None

    def ref(self, node, suffix: str) -> dict:
        key = (node.GetID(), node.GetImageData().GetMTime(), suffix)
        ref = self.refs.get(key)
        if ref is None or not pathlib.Path(ref["file"]).is_file():
            if self.folder is None:
                self.folder = pathlib.Path(tempfile.mkdtemp(prefix="mmg-effect-"))
            name = f"image{len(self.refs)}"
            array = np.asarray(self.util.arrayFromVolume(node))
            if array.ndim == 3:  # scalar volume: written as is, no axis reordering
                path = exchange.writeSlicerArray(array, bridge.nodeAffine(node, self.util),
                                                 self.folder / (name + suffix), compress=suffix == ".nii.gz")
                ref = {"file": str(path)}
            else:
                ref = actions.exportVolume(node, self.folder, name, suffix=suffix)
            self.refs[key] = ref
        return ref

    def clear(self) -> None:
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
        self.folder, self.refs = None, {}


def segmentsState(util, segmentationNode, reference, settings: MaskSettings):
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
            mask = util.arrayFromSegmentBinaryLabelmap(segmentationNode, segmentId, reference)
            masks[segmentId] = np.zeros(shape, bool) if mask is None else np.asarray(mask) > 0
    return ids, visible, masks


def maskInputs(util, editor, source):
    """(MaskSettings of the editor node, the source voxels (K, J, I) when the intensity range is on, else None)."""
    settings = MaskSettings.fromEditorNode(editor)
    sourceArray = np.asarray(util.arrayFromVolume(source)) if settings.intensityMask else None
    return settings, sourceArray


def paintingParams(util, mutable, images: ImageCache, editor, segmentationNode, source, extraVolumes, folder,
                   stroke: float, kind: str, suffix: str) -> tuple[dict, Run]:
    """Worker params of a painted-slices run (`kind` "quick" or "full") and its Run."""
    settings, sourceArray = maskInputs(util, editor, source)
    ids, visible, masks = segmentsState(util, segmentationNode, source, settings)
    painted = [s for s in ids if s in visible and masks[s].any()]
    if not painted:
        raise UserInputError("nothing painted yet", expected="a few painted slices of at least one visible "
                             "segment", fix="paint the structure on 2-5 slices with Paint, Draw or Threshold")
    labelKJI = np.zeros(masks[painted[0]].shape, np.uint8 if len(painted) < 255 else np.uint16)
    segmentation = segmentationNode.GetSegmentation()
    infos = {}
    for n, segmentId in enumerate(painted):
        labelKJI[masks[segmentId]] = n + 1
        infos[segmentId] = segmentInfo(segmentation.GetSegment(segmentId), n + 1, mutable)
    affine = bridge.nodeAffine(source, util)
    annotation = exchange.writeSlicerArray(labelKJI, affine, pathlib.Path(folder) / ("annotation" + suffix),
                                           compress=suffix == ".nii.gz")
    volumes = [source] + [v for v in extraVolumes if v is not None and v is not source]
    params = {"images": [images.ref(v, suffix) for v in volumes], "annotation": {"file": str(annotation)},
              "image_id": "|".join(f"{v.GetID()}:{v.GetImageData().GetMTime()}" for v in volumes),
              "preview": kind == "quick", "segments": list(infos.values()), "output_suffix": suffix}
    run = Run(kind, stroke, painted, {s: s for s in painted}, infos, masks, visible, settings, sourceArray, source,
              affine)
    return params, run


def supportParams(util, mutable, images: ImageCache, editor, segmentationNode, source, supportVolume,
                  supportSegmentationNode, folder, stroke: float, suffix: str) -> tuple[dict, Run]:
    """Worker params of a support-case run (a labelled volume of another patient) and its Run."""
    if supportVolume is None or supportSegmentationNode is None:
        raise UserInputError("support-case mode needs a labelled case", expected="a support volume and its "
                             "segmentation", fix="pick both under 'Support case' in the effect's options")
    labelRef, segments = actions.exportSegments(supportSegmentationNode, supportVolume, folder, "support_labels")
    supportSegmentation = supportSegmentationNode.GetSegmentation()
    for s in segments:
        s.update(segmentInfo(supportSegmentation.GetSegment(s["id"]), s["label"], mutable))
    settings, sourceArray = maskInputs(util, editor, source)
    ids, visible, masks = segmentsState(util, segmentationNode, source, settings)
    target = segmentationNode.GetSegmentation()
    previewIds, targets, infos = [], {}, {}
    for s in segments:
        previewId = f"support_{s['label']}"
        previewIds.append(previewId)
        targets[previewId] = target.GetSegmentIdBySegmentName(s["name"]) or None
        infos[previewId] = {k: s[k] for k in ("label", "name", "color", "terminology")}
    params = {"support_images": [[images.ref(supportVolume, suffix)]], "support_labels": [labelRef],
              "images": [images.ref(source, suffix)], "segments": list(infos.values())}
    return params, Run("support", stroke, previewIds, targets, infos, masks, visible, settings, sourceArray, source,
                       bridge.nodeAffine(source, util))
