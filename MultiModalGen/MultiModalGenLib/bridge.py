"""Bridge between Slicer MRML nodes and the backend's `Volume` (the only place Slicer's axis order is handled).

Conventions (see DESIGN.md, "Geometry contract"):

- Backend `Volume.array` is `(I, J, K)` (or `(C, I, J, K)`) with `affine` voxel `(i, j, k)` -> RAS mm.
- Slicer's `slicer.util.arrayFromVolume(node)` is `(K, J, I)` (or `(K, J, I, C)` for vector volumes) and a *view*
  of VTK memory: the bridge always copies and transposes. `node.GetIJKToRASMatrix()` is the same affine as the
  backend's (both RAS, both voxel index -> mm), so no sign flips happen here (LPS is handled only in file I/O).
- A registration displacement field maps **fixed-space points to moving-space points**:
  ``p_moving = p_fixed + u(p_fixed)``, `u` in RAS mm, sampled on the fixed grid, backend shape `(3, I, J, K)`.
  That is Slicer's *resampling* ("FromParent") convention: a grid transform set as the moving volume's parent
  with ``SetAndObserveTransformFromParent`` shows the moving volume aligned to the fixed one. Its displacement
  grid is a 3-component vtkImageData (array `(K, J, I, 3)`) with origin, spacing and a direction matrix.
- A linear registration result is the 4x4 RAS matrix fixed -> moving (resampling convention) and becomes a
  transform node with ``SetMatrixTransformFromParent``.

Pure functions (numpy only, testable outside Slicer) come first; node wrappers at the end take `util`
(`slicer.util` by default) and, for grid transforms, `vtkModules` so tests can pass small stand-ins.
"""

from __future__ import annotations

import numpy as np

from multimodalgen.errors import UserInputError
from multimodalgen.volume import Volume, direction_from_affine, spacing_from_affine

GEOMETRY_TOLERANCE_MM = 1e-3


# ---------------------------------------------------------------------------------------------------------------
# Axis order
# ---------------------------------------------------------------------------------------------------------------
def slicerArrayToVolumeArray(arrayKJI: np.ndarray) -> np.ndarray:
    """Slicer array `(K, J, I)` or `(K, J, I, C)` -> backend array `(I, J, K)` or `(C, I, J, K)` (a copy)."""
    arr = np.asarray(arrayKJI)
    if arr.ndim == 3:
        return np.ascontiguousarray(arr.transpose(2, 1, 0))
    if arr.ndim == 4:
        return np.ascontiguousarray(arr.transpose(3, 2, 1, 0))
    raise UserInputError("unsupported volume array", expected="(K,J,I) or (K,J,I,C)", got=f"shape {arr.shape}")


def volumeArrayToSlicerArray(array: np.ndarray) -> np.ndarray:
    """Backend array `(I, J, K)` or `(C, I, J, K)` -> Slicer array `(K, J, I)` or `(K, J, I, C)` (contiguous copy)."""
    arr = np.asarray(array)
    if arr.ndim == 3:
        return np.ascontiguousarray(arr.transpose(2, 1, 0))
    if arr.ndim == 4:
        return np.ascontiguousarray(arr.transpose(3, 2, 1, 0))
    raise UserInputError("unsupported volume array", expected="(I,J,K) or (C,I,J,K)", got=f"shape {arr.shape}")


# ---------------------------------------------------------------------------------------------------------------
# Grid geometry (origin / spacing / direction <-> affine)
# ---------------------------------------------------------------------------------------------------------------
def gridGeometryFromAffine(affine: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Affine voxel->RAS -> (origin (3,) RAS mm of voxel 0, spacing (3,) mm, direction 3x3 columns = axes)."""
    affine = np.asarray(affine, dtype=np.float64)
    return affine[:3, 3].copy(), spacing_from_affine(affine), direction_from_affine(affine)


def affineFromGridGeometry(origin, spacing, direction) -> np.ndarray:
    """(origin, spacing, 3x3 direction) -> 4x4 affine voxel (i, j, k) -> RAS mm."""
    affine = np.eye(4)
    affine[:3, :3] = np.asarray(direction, dtype=np.float64) * np.asarray(spacing, dtype=np.float64)[None, :]
    affine[:3, 3] = np.asarray(origin, dtype=np.float64)
    return affine


def composeParentTransform(ijkToRas: np.ndarray, parentToWorld: np.ndarray | None) -> np.ndarray:
    """Affine of a volume under a linear parent transform: world = parentToWorld @ IJKToRAS."""
    if parentToWorld is None:
        return np.asarray(ijkToRas, dtype=np.float64)
    return np.asarray(parentToWorld, dtype=np.float64) @ np.asarray(ijkToRas, dtype=np.float64)


# ---------------------------------------------------------------------------------------------------------------
# Displacement fields (backend (3, I, J, K) <-> Slicer grid (K, J, I, 3)), evaluation for checks
# ---------------------------------------------------------------------------------------------------------------
def fieldToGridArray(field: np.ndarray) -> np.ndarray:
    """Backend displacement field `(3, I, J, K)` RAS mm -> Slicer displacement grid array `(K, J, I, 3)` float64."""
    field = np.asarray(field)
    if field.ndim != 4 or field.shape[0] != 3:
        raise UserInputError("invalid displacement field", expected="shape (3, I, J, K) in RAS mm",
                             got=f"shape {field.shape}")
    return np.ascontiguousarray(field.transpose(3, 2, 1, 0), dtype=np.float64)


def gridArrayToField(gridArray: np.ndarray) -> np.ndarray:
    """Slicer displacement grid array `(K, J, I, 3)` -> backend field `(3, I, J, K)` float32 (a copy)."""
    grid = np.asarray(gridArray)
    if grid.ndim != 4 or grid.shape[-1] != 3:
        raise UserInputError("invalid displacement grid", expected="shape (K, J, I, 3)", got=f"shape {grid.shape}")
    return np.ascontiguousarray(grid.transpose(3, 2, 1, 0), dtype=np.float32)


def trilinear(values: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Sample `values` `(C, I, J, K)` at continuous voxel indices `index` `(N, 3)` (edge-clamped) -> `(N, C)`."""
    values = np.asarray(values, dtype=np.float64)
    shape = np.array(values.shape[1:])
    idx = np.clip(np.asarray(index, dtype=np.float64), 0, shape - 1)
    lo = np.minimum(np.floor(idx).astype(int), shape - 1)
    hi = np.minimum(lo + 1, shape - 1)
    frac = idx - lo
    out = np.zeros((idx.shape[0], values.shape[0]))
    for corner in range(8):
        pick = [(corner >> a) & 1 for a in range(3)]
        ii = [hi[:, a] if pick[a] else lo[:, a] for a in range(3)]
        w = np.prod([frac[:, a] if pick[a] else 1 - frac[:, a] for a in range(3)], axis=0)
        out += w[:, None] * values[:, ii[0], ii[1], ii[2]].T
    return out


def evaluateField(field: np.ndarray, affine: np.ndarray, pointsRas: np.ndarray) -> np.ndarray:
    """Backend view: displacement `(N, 3)` RAS mm at RAS points `(N, 3)` of a field `(3, I, J, K)` with `affine`."""
    pts = np.asarray(pointsRas, dtype=np.float64)
    index = (np.linalg.inv(affine) @ np.c_[pts, np.ones(len(pts))].T)[:3].T
    return trilinear(field, index)


def evaluateGrid(gridArray: np.ndarray, origin, spacing, direction, pointsRas: np.ndarray) -> np.ndarray:
    """Slicer view: what a vtkOrientedGridTransform with this displacement grid `(K, J, I, 3)`, origin, spacing
    and direction adds to RAS points `(N, 3)` (index = direction^T (p - origin) / spacing, trilinear)."""
    pts = np.asarray(pointsRas, dtype=np.float64)
    index = ((pts - np.asarray(origin)[None]) @ np.asarray(direction)) / np.asarray(spacing)[None]
    return trilinear(np.asarray(gridArray).transpose(3, 2, 1, 0), index)


def resamplingMatrixToModeling(fixedToMoving: np.ndarray) -> np.ndarray:
    """Resampling (FromParent, fixed -> moving) 4x4 -> modeling (ToParent, moving -> fixed) 4x4 shown by Slicer."""
    return np.linalg.inv(np.asarray(fixedToMoving, dtype=np.float64))


# ---------------------------------------------------------------------------------------------------------------
# Label maps and few-shot annotations (pure)
# ---------------------------------------------------------------------------------------------------------------
def combineSegmentMasks(masksKJI: list[np.ndarray]) -> np.ndarray:
    """Slicer binary masks `(K, J, I)` (segment order) -> backend label map `(I, J, K)`: segment n gets label n+1;
    where segments overlap the later segment wins (as Slicer's labelmap export does)."""
    if not masksKJI:
        raise UserInputError("no segments to export", expected="at least one segment", got="none",
                             fix="add a segment in the Segment Editor first")
    shape = np.asarray(masksKJI[0]).shape
    label = np.zeros(shape, dtype=np.uint8 if len(masksKJI) < 255 else np.uint16)
    for n, mask in enumerate(masksKJI):
        mask = np.asarray(mask)
        if mask.shape != shape:
            raise UserInputError("segments are on different grids", expected=f"shape {shape}", got=f"{mask.shape}")
        label[mask > 0] = n + 1
    return slicerArrayToVolumeArray(label)


def splitLabelMap(labelIJK: np.ndarray, labels: list[int]) -> dict[int, np.ndarray]:
    """Backend label map `(I, J, K)` -> {label: Slicer binary mask `(K, J, I)` uint8} for the given labels."""
    labelKJI = volumeArrayToSlicerArray(np.asarray(labelIJK))
    return {int(v): (labelKJI == v).astype(np.uint8) for v in labels}


def annotationAxis(annotationIJK: np.ndarray, affine: np.ndarray | None = None) -> int:
    """The voxel axis (0=i, 1=j, 2=k) the user painted slices across, by the backend's own rule
    (`multimodalgen.fewshot.annotations.find_annotations`: the image's default slice axis from `affine` (identity if
    None), unless the painting lies in clearly fewer slices along another axis), so Slicer and the command line pick
    the same axis for one painting. Raises the backend's one-line errors (e.g. nothing painted)."""
    from multimodalgen.fewshot.annotations import find_annotations

    mask = (np.asarray(annotationIJK) > 0).astype(np.uint8)
    if not mask.any():
        raise UserInputError("no painted voxels", expected="a few painted slices of the structure", got="empty",
                             fix="paint the structure on 2-5 slices with the Segment Editor, then Preview")
    return int(find_annotations(mask, np.eye(4) if affine is None else np.asarray(affine)).primary_axis)


def annotatedSlices(annotationIJK: np.ndarray, axis: int | None = None,
                    affine: np.ndarray | None = None) -> tuple[int, list[int]]:
    """(axis, sorted indices of slices along `axis` containing painted voxels) of an `(I, J, K)` annotation."""
    mask = np.asarray(annotationIJK) > 0
    axis = annotationAxis(mask, affine) if axis is None else int(axis)
    other = tuple(b for b in range(3) if b != axis)
    return axis, [int(s) for s in np.flatnonzero(mask.any(axis=other))]


def mergePreservingAnnotations(predictionIJK: np.ndarray, annotationIJK: np.ndarray,
                               axis: int | None = None, affine: np.ndarray | None = None) -> np.ndarray:
    """Few-shot Apply: the prediction everywhere except on the painted slices, which keep the user's painting
    exactly (voxel for voxel, including what the user left unpainted on those slices). Both `(I, J, K)`."""
    prediction = np.asarray(predictionIJK)
    annotation = np.asarray(annotationIJK)
    if prediction.shape != annotation.shape:
        raise UserInputError("prediction and annotation grids differ", expected=str(annotation.shape),
                             got=str(prediction.shape))
    axis, slices = annotatedSlices(annotation, axis, affine)
    out = prediction.copy()
    index = [slice(None)] * 3
    index[axis] = slices
    out[tuple(index)] = annotation[tuple(index)].astype(out.dtype)
    return out


#: Distinct colours (RGB 0..1) for new segments, in order.
SEGMENT_COLORS = [(0.90, 0.30, 0.25), (0.25, 0.65, 0.90), (0.35, 0.80, 0.35), (0.95, 0.75, 0.20),
                  (0.70, 0.40, 0.85), (0.20, 0.80, 0.75), (0.95, 0.50, 0.70), (0.60, 0.55, 0.35)]


def segmentColor(index: int) -> tuple[float, float, float]:
    """Colour for the `index`-th segment (cycles)."""
    return SEGMENT_COLORS[int(index) % len(SEGMENT_COLORS)]


# ---------------------------------------------------------------------------------------------------------------
# Node wrappers (thin; `util` is slicer.util unless a test passes a stand-in)
# ---------------------------------------------------------------------------------------------------------------
def _util(util):
    if util is not None:
        return util
    import slicer

    return slicer.util


def nodeAffine(node, util=None, applyParentTransform: bool = True) -> np.ndarray:
    """4x4 voxel -> RAS (world) affine of a volume node, including a *linear* parent transform.

    Raises UserInputError for a non-linear parent transform (harden it first: we never resample silently).
    """
    util = _util(util)
    matrix = util.vtkMatrixFromArray(np.eye(4))
    node.GetIJKToRASMatrix(matrix)
    ijkToRas = util.arrayFromVTKMatrix(matrix)
    parent = node.GetParentTransformNode() if applyParentTransform else None
    if parent is None:
        return np.array(ijkToRas, dtype=np.float64)
    if not parent.IsTransformToWorldLinear():
        raise UserInputError(f"volume '{node.GetName()}' is under a non-linear transform",
                             expected="no transform or a linear one", got=f"'{parent.GetName()}'",
                             fix="harden the transform (Data module, right-click > Harden transform) first")
    toWorld = util.vtkMatrixFromArray(np.eye(4))
    parent.GetMatrixTransformToWorld(toWorld)
    return composeParentTransform(ijkToRas, util.arrayFromVTKMatrix(toWorld))


def volumeFromNode(node, modality: str | None = None, util=None, applyParentTransform: bool = True) -> Volume:
    """A scalar/vector/label volume node -> backend `Volume` (copied, (I,J,K) order, affine incl. linear parent)."""
    util = _util(util)
    if node is None:
        raise UserInputError("no volume selected", expected="a volume node", got="None",
                             fix="select a volume in the panel")
    array = slicerArrayToVolumeArray(util.arrayFromVolume(node))
    return Volume(array, nodeAffine(node, util, applyParentTransform), modality,
                  {"node_id": node.GetID(), "name": node.GetName()})


def updateNodeFromVolume(node, volume: Volume, util=None) -> None:
    """Write a backend `Volume` into an existing volume node: voxels (copied) and IJKToRAS (no parent transform)."""
    util = _util(util)
    util.updateVolumeFromArray(node, volumeArrayToSlicerArray(volume.array))
    node.SetIJKToRASMatrix(util.vtkMatrixFromArray(volume.affine))


def labelVolumeFromSegmentation(segmentationNode, referenceVolumeNode, segmentIds: list[str] | None = None,
                                util=None, applyParentTransform: bool = True) -> Volume:
    """Segments (default: all, in order) -> backend label map on the reference volume's grid (label n = segment n).
    `metadata["segments"]` lists {label, id, name, color}."""
    util = _util(util)
    segmentation = segmentationNode.GetSegmentation()
    if segmentIds is None:
        segmentIds = [segmentation.GetNthSegmentID(n) for n in range(segmentation.GetNumberOfSegments())]
    masks = [util.arrayFromSegmentBinaryLabelmap(segmentationNode, segId, referenceVolumeNode) for segId in segmentIds]
    segments = []
    for n, segId in enumerate(segmentIds):
        segment = segmentation.GetSegment(segId)
        segments.append({"label": n + 1, "id": segId, "name": segment.GetName(), "color": list(segment.GetColor())})
    return Volume(combineSegmentMasks(masks), nodeAffine(referenceVolumeNode, util, applyParentTransform), "LABEL",
                  {"segments": segments})


def updateSegmentationFromLabelVolume(segmentationNode, label: Volume, referenceVolumeNode,
                                      names: dict[int, str], colors: dict[int, tuple] | None = None,
                                      util=None, terminologies: dict[int, str] | None = None) -> dict[int, str]:
    """Write each label of a backend label map into a segment (found by name or created) of `segmentationNode`.
    `terminologies` gives each label's Slicer `TerminologyEntry` tag string (set on the segment when non-empty).

    The label map must lie on the reference volume's grid (checked, never resampled silently). Sets the
    segmentation's reference geometry. Returns {label: segment id}.
    """
    util = _util(util)
    refAffine = nodeAffine(referenceVolumeNode, util)
    refShape = tuple(int(d) for d in referenceVolumeNode.GetImageData().GetDimensions())
    if tuple(label.shape3d) != refShape or not np.allclose(label.affine, refAffine, atol=GEOMETRY_TOLERANCE_MM):
        raise UserInputError("the result is not on the reference volume's grid", expected=f"shape {refShape}",
                             got=f"shape {label.shape3d}", fix="report this: results must come back on the input grid")
    segmentationNode.SetReferenceImageGeometryParameterFromVolumeNode(referenceVolumeNode)
    segmentation = segmentationNode.GetSegmentation()
    ids: dict[int, str] = {}
    for n, (value, mask) in enumerate(splitLabelMap(label.array, sorted(names)).items()):
        name = names[value]
        segId = segmentation.GetSegmentIdBySegmentName(name)
        if not segId:
            color = (colors or {}).get(value) or segmentColor(n)
            segId = segmentation.AddEmptySegment(name, name, list(color))
        if (terminologies or {}).get(value):
            segmentation.GetSegment(segId).SetTag("TerminologyEntry", terminologies[value])
        util.updateSegmentBinaryLabelmapFromArray(mask, segmentationNode, segId, referenceVolumeNode)
        ids[value] = segId
    return ids


def linearTransformFromParent(transformNode, fixedToMoving: np.ndarray, util=None) -> None:
    """Set a transform node to the 4x4 RAS matrix fixed -> moving (resampling convention)."""
    util = _util(util)
    transformNode.SetMatrixTransformFromParent(util.vtkMatrixFromArray(np.asarray(fixedToMoving, dtype=np.float64)))


def linearTransformToParent(transformNode, fixedToMoving: np.ndarray, util=None) -> None:
    """Set a transform node to the inverse of fixed -> moving: the same 4x4 RAS matrix stored ToParent, so the
    node's FromParent (resampling) direction is moving -> fixed."""
    util = _util(util)
    transformNode.SetMatrixTransformToParent(util.vtkMatrixFromArray(np.asarray(fixedToMoving, dtype=np.float64)))


def gridTransformFromField(transformNode, field: np.ndarray, fixedAffine: np.ndarray, vtkModules=None) -> None:
    """Set `transformNode` (vtkMRMLGridTransformNode) to the displacement field `(3, I, J, K)` RAS mm on the fixed
    grid `fixedAffine`, in the resampling (FromParent) direction."""
    transformNode.SetAndObserveTransformFromParent(_orientedGrid(field, fixedAffine, vtkModules))


def gridTransformToParent(transformNode, field: np.ndarray, fixedAffine: np.ndarray, vtkModules=None) -> None:
    """Set `transformNode` to the *inverse* of the fixed -> moving field `(3, I, J, K)` RAS mm on `fixedAffine`:
    the same grid stored in the ToParent direction. Slicer computes the FromParent (moving -> fixed) direction by
    inverting the grid itself where it is needed; `transformNode.Inverse()` gives the forward map back."""
    transformNode.SetAndObserveTransformToParent(_orientedGrid(field, fixedAffine, vtkModules))


def _orientedGrid(field: np.ndarray, fixedAffine: np.ndarray, vtkModules=None):
    """A vtkOrientedGridTransform holding displacement `field` `(3, I, J, K)` RAS mm on grid `fixedAffine`."""
    vtk, slicerModule, numpySupport = vtkModules or _vtkModules()
    origin, spacing, direction = gridGeometryFromAffine(fixedAffine)
    gridArray = fieldToGridArray(field)
    image = vtk.vtkImageData()
    image.SetDimensions(int(gridArray.shape[2]), int(gridArray.shape[1]), int(gridArray.shape[0]))
    image.SetOrigin(*[float(v) for v in origin])
    image.SetSpacing(*[float(v) for v in spacing])
    image.AllocateScalars(vtk.VTK_DOUBLE, 3)
    numpySupport.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(gridArray.shape)[:] = gridArray
    directionMatrix = vtk.vtkMatrix4x4()
    for r in range(3):
        for c in range(3):
            directionMatrix.SetElement(r, c, float(direction[r, c]))
    grid = slicerModule.vtkOrientedGridTransform()
    grid.SetDisplacementGridData(image)
    grid.SetGridDirectionMatrix(directionMatrix)
    return grid


def fieldFromGridTransform(transformNode, vtkModules=None) -> tuple[np.ndarray, np.ndarray]:
    """Read a grid transform node back: (field `(3, I, J, K)` RAS mm, affine of its grid), resampling direction."""
    vtk, _slicerModule, numpySupport = vtkModules or _vtkModules()
    grid = transformNode.GetTransformFromParent()
    image = grid.GetDisplacementGrid() if grid is not None and hasattr(grid, "GetDisplacementGrid") else None
    if image is None:
        raise UserInputError("the transform has no displacement grid", expected="a grid transform",
                             got=transformNode.GetName(), fix="select a grid (displacement field) transform")
    dims = image.GetDimensions()
    gridArray = numpySupport.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(dims[2], dims[1], dims[0], 3)
    matrix = grid.GetGridDirectionMatrix()
    direction = np.array([[matrix.GetElement(r, c) for c in range(3)] for r in range(3)])
    return gridArrayToField(gridArray), affineFromGridGeometry(image.GetOrigin(), image.GetSpacing(), direction)


def _vtkModules():
    import slicer
    import vtk
    import vtk.util.numpy_support as numpySupport

    return vtk, slicer, numpySupport
