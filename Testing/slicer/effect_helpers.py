"""Shared set-up of the few-shot effect tests and benchmark: a scene of stand-ins (source volume, segmentation with
painted slices, editor node, scripted effect) wired to a `FewShotEffectLogic`."""

from __future__ import annotations

import dataclasses

import numpy as np
import segment_editor_standins as se
import slicer_standins as sx

from MultiModalGenLib import bridge
from SegmentEditorMultiModalGenLib.effect_logic import FewShotEffectLogic

TUMOUR_TERMINOLOGY = ("Segmentation category and type - 3D Slicer General Anatomy list~SCT^49755003^Morphologically "
                      "Altered Structure~SCT^108369006^Neoplasm~^^~Anatomic codes - DICOM master list~^^~^^")


def ellipsoid(shape, centre, radii):
    g = np.indices(shape).astype(np.float32)
    return sum(((g[a] - centre[a]) / radii[a]) ** 2 for a in range(3)) < 1


def phantom(shape=(40, 40, 30), seed=1):
    """(image (I,J,K) float32, {name: truth mask (I,J,K)}): a bright and a dark ellipsoid in noise."""
    bright = ellipsoid(shape, (shape[0] * 0.45, shape[1] * 0.5, shape[2] * 0.5), (shape[0] * 0.2, shape[1] * 0.17,
                                                                                 shape[2] * 0.27))
    dark = ellipsoid(shape, (shape[0] * 0.78, shape[1] * 0.5, shape[2] * 0.5), (shape[0] * 0.1, shape[1] * 0.1,
                                                                               shape[2] * 0.2)) & ~bright
    image = 200 + 300 * bright - 150 * dark + np.random.default_rng(seed).normal(0, 15, shape)
    return image.astype(np.float32), {"tumour": bright, "cyst": dark}


def slices_of(mask, ks):
    out = np.zeros_like(mask, dtype=np.uint8)
    out[:, :, ks] = mask[:, :, ks]
    return out


@dataclasses.dataclass
class EffectScene:
    volume: sx.VolumeNode
    segmentation: sx.SegmentationNode
    editor: se.SegmentEditorNode
    effect: se.ScriptedEffect
    logic: FewShotEffectLogic
    truth: dict
    ids: dict
    status: list


def make_scene(runner, shape=(40, 40, 30), affine=None, util=None, names=("tumour", "cyst"), image=None,
               truth=None) -> EffectScene:
    """A source volume, a segmentation with empty segments `names` (tumour has a terminology entry), an editor
    node, the scripted effect stand-in and the effect logic observing the segmentation. `image` (I, J, K) and
    `truth` ({name: mask}) replace the generated phantom."""
    if image is None:
        image, truth = phantom(shape)
    affine = np.diag([1.2, 1.2, 2.0, 1.0]) if affine is None else affine
    volume = sx.VolumeNode(bridge.volumeArrayToSlicerArray(image), affine, "MR")
    segmentation = sx.SegmentationNode("Segmentation")
    colors = {"tumour": (0.9, 0.2, 0.2), "cyst": (0.2, 0.5, 0.9)}
    ids = {}
    for name in names:
        ids[name] = segmentation.segmentation.AddEmptySegment("", name, colors.get(name, (0.5, 0.5, 0.5)))
    segmentation.segmentation.GetSegment(ids[names[0]]).SetTag("TerminologyEntry", TUMOUR_TERMINOLOGY)
    editor = se.SegmentEditorNode(segmentation, volume)
    effect = se.ScriptedEffect(editor)
    logic = FewShotEffectLogic(effect, se.LogicStandIn(runner), util or sx.Util, sx.SCENE, sx.OrientedImageData,
                               sx.Mutable, modeSet=se.ScriptedEffect.ModificationModeSet)
    status: list[str] = []
    logic.statusCallback = status.append
    segmentation.segmentation.AddObserver(sx.Segmentation.SegmentModified, logic.onSegmentationModified)
    return EffectScene(volume, segmentation, editor, effect, logic, truth, ids, status)


def paint_slices(scene: EffectScene, name: str, ks) -> np.ndarray:
    """Paint the truth of `name` on slices `ks` (a stroke); returns the painting (I, J, K)."""
    painting = slices_of(scene.truth[name], list(ks))
    se.paint(scene.segmentation, scene.ids[name], bridge.volumeArrayToSlicerArray(painting))
    return painting


def mask_ijk(segmentationNode, segId) -> np.ndarray:
    return bridge.slicerArrayToVolumeArray(segmentationNode.segmentation.masks[segId]) > 0


def dice(a, b) -> float:
    return 2 * float((a & b).sum()) / max(1.0, float(a.sum() + b.sum()))
