"""Node-level glue for each panel action: nodes -> task params (NIfTI files in a temp folder) and task outputs ->
nodes. Runs in Slicer's main thread; heavy work happens in the backend worker, never here.

Each ``prepare*`` returns the worker params (file references, see `multimodalgen.worker.protocol`); each
``import*`` turns the task's outputs into MRML nodes. The pure geometry lives in `bridge`.
"""

from __future__ import annotations

import json
import logging
import pathlib
import tempfile

import numpy as np

from MultiModalGenLib import bridge
from MultiModalGenLib.segment_info import (PREVIEW_NAME_SUFFIX, PREVIEW_TAG, TERMINOLOGY_TAG, completeSegmentInfos,
                                           segmentTag)
from multimodalgen.errors import UserInputError
from multimodalgen.worker import protocol

MODALITIES = ("T1", "T2", "PD", "FLAIR", "CT", "PET")
PREVIEW_SUFFIX = " preview"


def newExchangeFolder() -> pathlib.Path:
    """A short-path temp folder for files crossing to the worker (short: Windows path limits)."""
    return pathlib.Path(tempfile.mkdtemp(prefix="mmg-"))


def exportVolume(node, folder: pathlib.Path, name: str, modality: str | None = None, label: bool = False,
                 applyParentTransform: bool = True, suffix: str = ".nii.gz") -> dict:
    """Write a volume node as NIfTI (through the bridge: copied, (I,J,K), RAS affine); returns a file reference.
    With `applyParentTransform` a linear parent transform is included in the affine (world coordinates).
    `suffix` ".nii" writes uncompressed (faster for a local worker)."""
    from multimodalgen.io import write_label, write_volume

    volume = bridge.volumeFromNode(node, modality=modality, applyParentTransform=applyParentTransform)
    path = pathlib.Path(folder) / f"{name}{suffix}"
    if label:  # a mask: non-zero = inside
        write_label(volume.with_array((volume.array > 0).astype(np.uint8), modality="LABEL"), path)
    else:
        write_volume(volume, path)
    return protocol.file_ref(str(path))


def exportSegments(segmentationNode, referenceVolumeNode, folder: pathlib.Path, name: str,
                   segmentIds: list[str] | None = None, applyParentTransform: bool = True) -> tuple[dict, list[dict]]:
    """Write segments as one label map on the reference grid (segment n -> label n). Returns (file ref, segments)."""
    from multimodalgen.io import write_label

    label = bridge.labelVolumeFromSegmentation(segmentationNode, referenceVolumeNode, segmentIds,
                                               applyParentTransform=applyParentTransform)
    path = pathlib.Path(folder) / f"{name}.nii.gz"
    write_label(label, path)
    return protocol.file_ref(str(path)), label.metadata["segments"]


def readOutputVolume(ref: dict, label: bool = False):
    from multimodalgen.io import read_label, read_volume

    path = protocol.require_file({"ref": ref}, "ref")
    return read_label(path) if label else read_volume(path)


# -- registration ------------------------------------------------------------------------------------------------
def prepareRegistration(fixedVolume, movingVolume, mode: str, preset: str, fixedMask=None, movingMask=None,
                        movingSegmentation=None, resample: bool = False, folder: pathlib.Path | None = None) -> dict:
    """Params of the ``register`` task."""
    if fixedVolume is None or movingVolume is None:
        raise UserInputError("registration needs a fixed and a moving volume", fix="select both in the panel")
    if fixedVolume == movingVolume:
        raise UserInputError("the fixed and moving volumes are the same node", fix="select two different volumes")
    folder = folder or newExchangeFolder()
    # The fixed side is taken in world coordinates; the moving side in its own (local) coordinates, so the
    # result maps fixed world points to moving local points and becomes the moving volume's parent transform
    # (replacing any earlier one, e.g. from a previous registration).
    params = {"fixed": exportVolume(fixedVolume, folder, "fixed"),
              "moving": exportVolume(movingVolume, folder, "moving", applyParentTransform=False),
              "mode": mode, "preset": preset, "resample": bool(resample),
              # what importRegistration reads: the dense field (deformable), the warped image (resample), the report
              "outputs": ["report"] + (["displacement"] if mode == "deformable" else []) + (
                  ["warped"] if resample else [])}
    if fixedMask is not None:
        params["fixed_mask"] = exportVolume(fixedMask, folder, "fixed_mask", label=True)
    if movingMask is not None:
        params["moving_mask"] = exportVolume(movingMask, folder, "moving_mask", label=True, applyParentTransform=False)
    if movingSegmentation is not None:
        params["moving_labels"], params["moving_segments"] = exportSegments(
            movingSegmentation, movingVolume, folder, "moving_labels", applyParentTransform=False)
    return params


def importRegistration(outputs: dict, movingVolume, fixedVolume, outputTransform=None, outputVolume=None,
                       movingSegmentation=None, applyToMoving: bool = True, inverseTransform=None,
                       createInverse: bool = True):
    """Create/update the transform node (fixed -> moving, resampling convention) and optional resampled volume.

    With `createInverse` (default) a second node holds the inverse (moving -> fixed, resampling convention: set as
    the parent of the *fixed* volume it shows the fixed volume in the moving volume's place). It stores the same
    matrix or displacement grid in the ToParent direction, so Slicer itself inverts it exactly where it is used
    (grid transforms iteratively), and it can be inverted back (Data module > Invert transform, node.Inverse()) or
    hardened like any transform node. It is `inverseTransform` when given, else the node the forward node
    references as "inverse", else a new node; the forward node references it under "inverse".
    """
    import slicer

    if outputs.get("displacement"):
        field = readOutputVolume(outputs["displacement"])
        if outputTransform is None or not outputTransform.IsA("vtkMRMLGridTransformNode"):
            name = outputTransform.GetName() if outputTransform is not None else f"{movingVolume.GetName()} to fixed"
            if outputTransform is not None:
                logging.info("Replacing linear transform node %s by a grid transform node", name)
                slicer.mrmlScene.RemoveNode(outputTransform)
            outputTransform = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLGridTransformNode", name)
        # displacement.nii.gz holds LPS mm components (ITK's convention, as every door of the register verb)
        rasField = field.array * np.array([-1.0, -1.0, 1.0], np.float32)[:, None, None, None]
        bridge.gridTransformFromField(outputTransform, rasField, field.affine)
    else:
        rasField = None
        if outputTransform is None:
            outputTransform = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLinearTransformNode",
                                                                 f"{movingVolume.GetName()} to fixed")
        bridge.linearTransformFromParent(outputTransform, np.asarray(outputs["affine"], dtype=np.float64))
    outputTransform.SetNodeReferenceID("fixed", fixedVolume.GetID())
    outputTransform.SetNodeReferenceID("moving", movingVolume.GetID())
    if createInverse or inverseTransform is not None:
        inverseTransform = _inverseNode(outputTransform, inverseTransform, rasField is not None, fixedVolume)
        if rasField is not None:
            bridge.gridTransformToParent(inverseTransform, rasField, field.affine)
        else:
            bridge.linearTransformToParent(inverseTransform, np.asarray(outputs["affine"], dtype=np.float64))
        inverseTransform.SetNodeReferenceID("fixed", fixedVolume.GetID())
        inverseTransform.SetNodeReferenceID("moving", movingVolume.GetID())
        outputTransform.SetNodeReferenceID("inverse", inverseTransform.GetID())
    if applyToMoving:
        movingVolume.SetAndObserveTransformNodeID(outputTransform.GetID())
        if movingSegmentation is not None:
            movingSegmentation.SetAndObserveTransformNodeID(outputTransform.GetID())
    if outputVolume is not None and outputs.get("warped"):
        bridge.updateNodeFromVolume(outputVolume, readOutputVolume(outputs["warped"]))
        outputVolume.SetAndObserveTransformNodeID(None)
    return outputTransform


def _inverseNode(forward, given, grid: bool, fixedVolume):
    """The node that receives the inverse: `given`, else the forward node's "inverse" reference, else a new one
    (a grid node for a grid transform, a linear node for a matrix; a node of the other kind is replaced)."""
    import slicer

    node = given if given is not None else forward.GetNodeReference("inverse")
    className = "vtkMRMLGridTransformNode" if grid else "vtkMRMLLinearTransformNode"
    if node is not None and node.IsA(className):
        return node
    name = node.GetName() if node is not None else f"{fixedVolume.GetName()} to moving (inverse)"
    if node is not None:
        slicer.mrmlScene.RemoveNode(node)
    return slicer.mrmlScene.AddNewNodeByClass(className, name)


# -- few-shot ----------------------------------------------------------------------------------------------------
def prepareFewShot(volumes: list, segmentationNode, segmentId: str, imageIds: list[str],
                   folder: pathlib.Path | None = None) -> tuple[dict, object]:
    """Params of the ``fewshot`` task from painted slices of one segment; returns (params, painted label Volume)."""
    if not volumes or volumes[0] is None:
        raise UserInputError("few-shot needs a volume", fix="select the volume you painted on")
    if segmentationNode is None or not segmentId:
        raise UserInputError("few-shot needs a painted segment", fix="select the segmentation and the segment")
    folder = folder or newExchangeFolder()
    reference = volumes[0]
    annotationRef, segments = exportSegments(segmentationNode, reference, folder, "annotation", [segmentId])
    annotation = readOutputVolume(annotationRef, label=True)
    axis, slices = bridge.annotatedSlices(annotation.array, affine=annotation.affine)
    images = [exportVolume(v, folder, f"image{n}") for n, v in enumerate(volumes) if v is not None]
    params = {"images": images, "annotation": annotationRef, "image_id": "|".join(imageIds),
              "axis": axis, "segments": segments, "resample": True}  # volumes of other grids: resampled, reported
    return params, annotation


def describeAnnotation(annotation) -> str:
    axis, slices = bridge.annotatedSlices(annotation.array, affine=annotation.affine)
    return f"{len(slices)} slice(s) along {'IJK'[axis]}: {', '.join(map(str, slices[:12]))}"


def previewSegmentation(segmentationNode, create: bool = True):
    """The preview segmentation node paired with `segmentationNode` (by node reference)."""
    import slicer

    preview = segmentationNode.GetNodeReference("MultiModalGenPreview")
    if preview is None and create:
        preview = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode",
                                                     segmentationNode.GetName() + PREVIEW_SUFFIX)
        preview.CreateDefaultDisplayNodes()
        preview.GetDisplayNode().SetOpacity(0.5)
        segmentationNode.SetNodeReferenceID("MultiModalGenPreview", preview.GetID())
    return preview


def importFewShotPreview(outputs: dict, segmentationNode, segmentId: str, referenceVolume):
    """Write the predicted structure into the preview segmentation (the user's segment is untouched)."""
    import vtk

    label = readOutputVolume(outputs["segmentation"], label=True)
    preview = previewSegmentation(segmentationNode)
    segment = segmentationNode.GetSegmentation().GetSegment(segmentId)
    ids = bridge.updateSegmentationFromLabelVolume(
        preview, label.with_array((label.array > 0).astype(np.uint8)), referenceVolume,
        {1: segment.GetName() + PREVIEW_NAME_SUFFIX}, {1: segment.GetColor()},
        terminologies={1: segmentTag(segment, TERMINOLOGY_TAG, vtk.mutable)})
    preview.GetSegmentation().GetSegment(ids[1]).SetTag(PREVIEW_TAG, "1")
    return preview


def applyFewShotPreview(segmentationNode, segmentId: str, referenceVolume) -> None:
    """Copy the preview into the user's segment; painted slices keep the user's painting exactly."""
    import slicer

    preview = previewSegmentation(segmentationNode, create=False)
    if preview is None or preview.GetSegmentation().GetNumberOfSegments() == 0:
        raise UserInputError("there is no preview to apply", fix="call fewShotPreview first")
    painted = bridge.labelVolumeFromSegmentation(segmentationNode, referenceVolume, [segmentId])
    previewId = preview.GetSegmentation().GetNthSegmentID(0)
    predicted = bridge.labelVolumeFromSegmentation(preview, referenceVolume, [previewId])
    merged = bridge.mergePreservingAnnotations(predicted.array, painted.array, affine=painted.affine)
    slicer.util.updateSegmentBinaryLabelmapFromArray(bridge.volumeArrayToSlicerArray(merged).astype(np.uint8),
                                                     segmentationNode, segmentId, referenceVolume)
    discardFewShotPreview(segmentationNode)


def discardFewShotPreview(segmentationNode) -> None:
    import slicer

    preview = previewSegmentation(segmentationNode, create=False)
    if preview is not None:
        slicer.mrmlScene.RemoveNode(preview)


# -- personalized segmentation and adapters ----------------------------------------------------------------------
def prepareSegment(volumesByModality: dict, adapter: str | None, folder: pathlib.Path | None = None, *,
                   atlas: str | None = None, atlasWeight: float | None = None) -> dict:
    """The `segment` task's parameters: the volumes exported to `folder`, the adapter, the optional tissue atlas
    (a file reference; checked to exist here, its content by the backend) and its weight."""
    present = {m: n for m, n in volumesByModality.items() if n is not None}
    if not present:
        raise UserInputError("personalized segmentation needs at least one volume",
                             fix="select the patient's volumes (any of T1, T2, PD, FLAIR, CT, PET)")
    unknown = sorted(set(present) - set(MODALITIES))
    if unknown:
        raise UserInputError("unknown modality", expected=", ".join(MODALITIES), got=", ".join(unknown))
    if atlas and not pathlib.Path(atlas).is_file():     # before any volume is exported
        raise UserInputError("tissue atlas not found", got=str(atlas),
                             fix="choose a 4D tissue probability map (e.g. SPM12's tpm/TPM.nii) or clear the field")
    if atlasWeight is not None and not atlas:
        raise UserInputError("an atlas weight without an atlas", fix="choose the tissue atlas too")
    folder = folder or newExchangeFolder()
    params = {"images": {m: exportVolume(n, folder, m, modality=m) for m, n in present.items()}}
    if adapter:
        params["adapter"] = str(adapter)
    if atlas:
        params["atlas"] = protocol.file_ref(str(pathlib.Path(atlas).resolve()))
        if atlasWeight is not None:
            params["atlas_weight"] = float(atlasWeight)
    return params


def importSegment(outputs: dict, referenceVolume, outputSegmentation=None):
    """Named, coloured segments from the ``segment`` task's label map; `referenceVolume` is a node or a list of
    candidate nodes (the one on the result's grid is used)."""
    import slicer

    label = readOutputVolume(outputs["segmentation"], label=True)
    candidates = referenceVolume if isinstance(referenceVolume, (list, tuple)) else [referenceVolume]
    referenceVolume = next((n for n in candidates if tuple(n.GetImageData().GetDimensions()) == label.shape3d
                            and np.allclose(bridge.nodeAffine(n), label.affine, atol=1e-3)), candidates[0])
    # names, colours and terminology from the model's label definitions (what the task or the label map carries),
    # completed from multimodalgen.terminology where the task gave only names
    segments = completeSegmentInfos(outputs.get("segments") or label.metadata.get("segments"),
                                    [int(v) for v in np.unique(label.array) if v > 0])
    if outputSegmentation is None:
        outputSegmentation = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode",
                                                                f"{referenceVolume.GetName()} segmentation")
        outputSegmentation.CreateDefaultDisplayNodes()
    names = {s["label"]: s["name"] for s in segments}
    colors = {s["label"]: tuple(s["color"]) for s in segments}
    terminologies = {s["label"]: s["terminology"] for s in segments}
    bridge.updateSegmentationFromLabelVolume(outputSegmentation, label, referenceVolume, names, colors,
                                             terminologies=terminologies)
    return outputSegmentation


def prepareFinetune(casesCsv: str | None, sceneCase: dict | None, adapterName: str, adaptersFolder: pathlib.Path,
                    folder: pathlib.Path | None = None) -> dict:
    """Params of the ``finetune`` task: cases from CASES.csv (paths as given) and/or the current patient."""
    if not adapterName or any(c in adapterName for c in "/\\:"):
        raise UserInputError("invalid adapter name", expected="a plain name such as site-adapter",
                             got=repr(adapterName))
    folder = folder or newExchangeFolder()
    params: dict = {"adapter_name": adapterName, "adapters_dir": str(adaptersFolder), "cases": []}
    if casesCsv:
        params["cases_csv"] = protocol.file_ref(str(pathlib.Path(casesCsv).resolve()))
    if sceneCase:
        volumes, segmentation = sceneCase["volumes"], sceneCase["segmentation"]
        case = prepareSegment(volumes, None, folder)
        reference = next(n for n in volumes.values() if n is not None)
        case["label"], case["segments"] = exportSegments(segmentation, reference, folder, "label")
        params["cases"].append(case)
    if not params["cases"] and "cases_csv" not in params:
        raise UserInputError("no training cases", fix="choose a CASES.csv or tick 'Add the current patient'")
    return params


def importFinetuneResult(outputs: dict, adaptersFolder: pathlib.Path) -> str:
    """After fine-tuning: the adapter is already in the local adapters folder (local worker), or arrives as a
    downloaded zip (remote server) and is unpacked there. Returns the adapter name."""
    name = outputs.get("adapter_name") or pathlib.Path(outputs.get("adapter", "adapter")).name
    if (pathlib.Path(adaptersFolder) / name).is_dir():
        return name
    archive = protocol.require_file(outputs, "adapter_zip")
    renamed = pathlib.Path(archive).with_name(f"{name}.zip")
    pathlib.Path(archive).replace(renamed)
    return importAdapter(str(renamed), adaptersFolder)


def listAdapters(adaptersFolder: pathlib.Path) -> list[dict]:
    """Adapters in the folder: each a sub-folder with config JSON (name, modalities, created)."""
    out = []
    folder = pathlib.Path(adaptersFolder)
    if not folder.is_dir():
        return out
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        configs = sorted(sub.glob("*.json"))
        info = {"name": sub.name, "path": str(sub)}
        if configs:
            try:
                info.update({k: v for k, v in json.loads(configs[0].read_text()).items()
                             if isinstance(v, (str, int, float, list))})
            except (OSError, ValueError):
                info["warning"] = "unreadable config"
        out.append(info)
    return out


def importAdapter(source: str, adaptersFolder: pathlib.Path) -> str:
    """Copy an adapter (a folder, or a .zip of one) into the adapters folder; returns its name."""
    import shutil

    source_path = pathlib.Path(source)
    target_root = pathlib.Path(adaptersFolder)
    target_root.mkdir(parents=True, exist_ok=True)
    if source_path.is_dir():
        name = source_path.name
        if (target_root / name).exists():
            raise UserInputError(f"an adapter named '{name}' already exists", fix="delete or rename it first")
        shutil.copytree(source_path, target_root / name)
        return name
    if source_path.suffix.lower() == ".zip" and source_path.is_file():
        name = source_path.stem
        if (target_root / name).exists():
            raise UserInputError(f"an adapter named '{name}' already exists", fix="delete or rename it first")
        shutil.unpack_archive(str(source_path), str(target_root / name), "zip")
        return name
    raise UserInputError("cannot import adapter", expected="an adapter folder or .zip", got=str(source_path))


def exportAdapter(name: str, adaptersFolder: pathlib.Path, zipPath: str) -> str:
    """Zip adapter `name` to `zipPath` (returns the written path)."""
    import shutil

    folder = pathlib.Path(adaptersFolder) / name
    if not folder.is_dir():
        raise UserInputError(f"no adapter named '{name}'", fix="refresh the adapter list")
    base = str(zipPath)[:-4] if str(zipPath).lower().endswith(".zip") else str(zipPath)
    return shutil.make_archive(base, "zip", root_dir=str(folder))


def deleteAdapter(name: str, adaptersFolder: pathlib.Path) -> None:
    import shutil

    folder = pathlib.Path(adaptersFolder) / name
    if not folder.is_dir() or folder.parent != pathlib.Path(adaptersFolder):
        raise UserInputError(f"no adapter named '{name}'", fix="refresh the adapter list")
    shutil.rmtree(folder)
