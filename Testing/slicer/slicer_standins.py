"""Small stand-ins for the Slicer/VTK objects the bridge and the actions touch, offering the same method names.

They hold numpy arrays in Slicer's layout (volumes `(K, J, I)`, displacement grids `(K, J, I, 3)`) and return
*views* from the `arrayFrom*` accessors, like Slicer does, so a bridge that forgets to copy is caught. Each class
names the Slicer/VTK API it mimics (Slicer 5.10+ Python API; C++ headers under Libs/MRML/Core,
Modules/Loadable/Segmentations and Base/Python/slicer/util.py). The Segment Editor stand-ins (editor node, scripted
effect with masking and undo) are in `segment_editor_standins.py`.
"""

from __future__ import annotations

import itertools
import types

import numpy as np

_UIDS = itertools.count(1)      # MRML node IDs are unique in a scene ("vtkMRMLScalarVolumeNode1", ...)
_MTIMES = itertools.count(1)    # vtkObject modification times only grow


class SettingsStore(dict):
    """`qt.QSettings` stand-in (value / setValue) for the module's settings."""

    def value(self, key, default=None):
        return self.get(key, default)

    def setValue(self, key, value):
        self[key] = value


class Matrix4x4:
    """`vtk.vtkMatrix4x4` stand-in: GetElement / SetElement / DeepCopy on a 4x4 float64 array."""

    def __init__(self, array=None):
        self.a = np.eye(4) if array is None else np.array(array, dtype=np.float64)

    def GetElement(self, r, c):
        return float(self.a[r, c])

    def SetElement(self, r, c, v):
        self.a[r, c] = v

    def DeepCopy(self, other):
        self.a = other.a.copy()


class ImageData:
    """vtkImageData stand-in: dimensions (I, J, K), origin, spacing, scalars as a flat numpy array."""

    def __init__(self, dims=(1, 1, 1), components=1, dtype=np.float64):
        self.dims = tuple(int(d) for d in dims)
        self.origin = (0.0, 0.0, 0.0)
        self.spacing = (1.0, 1.0, 1.0)
        self.scalars = np.zeros(int(np.prod(self.dims)) * components, dtype=dtype)
        self.components = components

    # vtk API
    def SetDimensions(self, i, j, k):
        self.dims = (i, j, k)

    def GetDimensions(self):
        return self.dims

    def SetOrigin(self, *o):
        self.origin = tuple(o)

    def GetOrigin(self):
        return self.origin

    def SetSpacing(self, *s):
        self.spacing = tuple(s)

    def GetSpacing(self):
        return self.spacing

    def AllocateScalars(self, vtkType, components):
        self.components = components
        self.scalars = np.zeros(int(np.prod(self.dims)) * components, dtype=np.float64)

    def GetPointData(self):
        return types.SimpleNamespace(GetScalars=lambda: self.scalars)


class OrientedGridTransform:
    """`slicer.vtkOrientedGridTransform` stand-in: SetDisplacementGridData / GetDisplacementGrid and the grid
    direction matrix (Libs/vtkAddon/vtkOrientedGridTransform.h)."""

    def __init__(self):
        self.image = None
        self.direction = Matrix4x4()

    def SetDisplacementGridData(self, image):
        self.image = image

    def GetDisplacementGrid(self):
        return self.image

    def SetGridDirectionMatrix(self, m):
        self.direction = Matrix4x4(m.a)

    def GetGridDirectionMatrix(self):
        return self.direction


class NodeBase:
    """`vtkMRMLNode` / `vtkMRMLTransformableNode` stand-in: ID, name, class, attributes, node references
    (SetNodeReferenceID / GetNodeReference) and the parent transform (SetAndObserveTransformNodeID,
    GetTransformNodeID, GetParentTransformNode)."""

    className = "vtkMRMLNode"

    def GetName(self):
        return self.name

    def GetID(self):
        return f"{self.className}{self.__dict__.setdefault('uid', next(_UIDS))}"

    def IsA(self, className):
        return className == self.className or (className == "vtkMRMLTransformNode" and "Transform" in self.className)

    def SetNodeReferenceID(self, role, nodeId):
        refs = self.__dict__.setdefault("references", {})
        if nodeId:
            refs[role] = nodeId
        else:  # Slicer: a None/empty ID removes the reference
            refs.pop(role, None)

    def SetAttribute(self, name, value):
        self.__dict__.setdefault("attributes", {})[name] = value

    def GetAttribute(self, name):
        return self.__dict__.get("attributes", {}).get(name)

    def GetTransformNodeID(self):
        parent = self.__dict__.get("parent")
        return parent.GetID() if parent is not None else None

    def GetNodeReference(self, role):
        nodeId = self.__dict__.get("references", {}).get(role)
        return SCENE.nodes.get(nodeId) if nodeId else None

    def SetAndObserveTransformNodeID(self, nodeId):
        self.parent = SCENE.nodes.get(nodeId) if nodeId else None

    def GetParentTransformNode(self):
        return self.__dict__.get("parent")


class TransformNode(NodeBase):
    """vtkMRMLTransformNode stand-in (linear matrix to parent, or a grid FromParent)."""

    className = "vtkMRMLTransformNode"

    def __init__(self, name="T", toParent=None, linear=True):
        self.name = name
        SCENE.add(self)
        self.toParent = np.eye(4) if toParent is None else np.asarray(toParent, dtype=np.float64)
        self.linear = linear
        self.fromParentGrid = None
        self.fromParentMatrix = None

    def IsTransformToWorldLinear(self):
        return self.linear

    def GetMatrixTransformToWorld(self, m):
        m.a = self.toParent.copy()

    def SetMatrixTransformFromParent(self, m):
        self.fromParentMatrix = m.a.copy()
        self.toParent = np.linalg.inv(m.a)

    def SetAndObserveTransformFromParent(self, t):
        self.fromParentGrid = t
        self.toParentGrid = None  # Slicer: the other direction is computed (inverted) from this one when used
        self.linear = False

    def GetTransformFromParent(self):
        return self.fromParentGrid

    def SetMatrixTransformToParent(self, m):
        self.toParent = m.a.copy()
        self.fromParentMatrix = np.linalg.inv(m.a)

    def SetAndObserveTransformToParent(self, t):
        self.toParentGrid = t
        self.fromParentGrid = None
        self.linear = False

    def GetTransformToParent(self):
        return self.__dict__.get("toParentGrid")

    def Inverse(self):
        """vtkMRMLTransformNode::Inverse: swap the two directions (what "Invert transform" does in Slicer)."""
        if self.linear:
            self.toParent, self.fromParentMatrix = np.linalg.inv(self.toParent), np.linalg.inv(self.fromParentMatrix)
        else:
            self.fromParentGrid, self.toParentGrid = self.__dict__.get("toParentGrid"), self.fromParentGrid


class VolumeNode(NodeBase):
    """vtkMRMLScalarVolumeNode stand-in storing its voxels as (K, J, I) like VTK memory."""

    className = "vtkMRMLScalarVolumeNode"

    def __init__(self, arrayKJI, ijkToRas, name="vol", parent=None):
        self.kji = np.array(arrayKJI)
        self.mtime = next(_MTIMES)
        self.ijkToRas = np.array(ijkToRas, dtype=np.float64)
        self.name = name
        self.parent = parent
        SCENE.add(self)

    def GetIJKToRASMatrix(self, m):
        m.a = self.ijkToRas.copy()

    def SetIJKToRASMatrix(self, m):
        self.ijkToRas = m.a.copy()

    def GetParentTransformNode(self):
        return self.parent

    def GetImageData(self):
        return types.SimpleNamespace(GetDimensions=lambda: tuple(reversed(self.kji.shape[:3])),
                                     GetMTime=lambda: self.mtime)


class Mutable:
    """`vtk.mutable` stand-in: a string holder that output arguments (e.g. `vtkSegment.GetTag`) write into."""

    def __init__(self, value=""):
        self.value = value

    def set(self, value):
        self.value = value

    def __str__(self):
        return str(self.value)


class Segment:
    """`vtkSegment` stand-in: name, colour and tags (`GetTag(name, vtk.mutable)` returns found and fills the
    holder, as Slicer's Python wrapping does; Libs/vtkSegmentationCore/vtkSegment.h)."""

    def __init__(self, name, color):
        self.name, self.color = name, tuple(color)
        self.tags: dict[str, str] = {}

    def GetName(self):
        return self.name

    def SetName(self, name):
        self.name = name

    def GetColor(self):
        return self.color

    def SetColor(self, r, g, b):
        self.color = (float(r), float(g), float(b))

    def SetTag(self, tag, value):
        self.tags[tag] = str(value)

    def GetTag(self, tag, holder):
        if tag not in self.tags:
            return False
        holder.set(self.tags[tag])
        return True


class Segmentation:
    """`vtkSegmentation` stand-in: ordered segments, AddEmptySegment / RemoveSegment / lookups by ID and name.
    Binary labelmaps are kept per segment as `(K, J, I)` arrays on the reference grid (`masks`)."""

    SegmentModified, SegmentAdded, SegmentRemoved = 62100, 62101, 62102  # vtkSegmentation event IDs (values arbitrary)

    def __init__(self):
        self.order: list[str] = []
        self.segments: dict[str, Segment] = {}
        self.masks: dict[str, np.ndarray] = {}
        self.observers: dict[int, tuple[int, object]] = {}

    # vtkObject observers (AddObserver returns a tag; callbacks get (caller, event))
    def AddObserver(self, event, callback):
        tag = len(self.observers) + 1
        self.observers[tag] = (event, callback)
        return tag

    def RemoveObserver(self, tag):
        self.observers.pop(tag, None)

    def InvokeEvent(self, event):
        for observed, callback in list(self.observers.values()):
            if observed == event:
                callback(self, event)

    def GetNumberOfSegments(self):
        return len(self.order)

    def GetNthSegmentID(self, n):
        return self.order[n]

    def GetSegment(self, segId):
        return self.segments.get(segId)  # None when absent, as in Slicer

    def GetSegmentIdBySegmentName(self, name):
        return next((k for k, s in self.segments.items() if s.name == name), "")

    def AddEmptySegment(self, segId, name, color):
        n = len(self.order) + 1
        while not segId or segId in self.segments:  # Slicer generates a unique ID when none/a taken one is given
            segId, n = f"Segment_{n}", n + 1
        self.order.append(segId)
        self.segments[segId] = Segment(name, color)
        self.InvokeEvent(self.SegmentAdded)
        return segId

    def RemoveSegment(self, segId):
        self.order.remove(segId)
        self.segments.pop(segId)
        self.masks.pop(segId, None)
        self.InvokeEvent(self.SegmentRemoved)


class SegmentationDisplayNode:
    """`vtkMRMLSegmentationDisplayNode` stand-in: overall opacity and per-segment visibility (default visible)."""

    def __init__(self):
        self.opacity = 1.0
        self.hidden: set[str] = set()

    def SetOpacity(self, value):
        self.opacity = float(value)

    def GetSegmentVisibility(self, segId):
        return segId not in self.hidden

    def SetSegmentVisibility(self, segId, visible):
        (self.hidden.discard if visible else self.hidden.add)(segId)


class OrientedImageData:
    """`slicer.vtkOrientedImageData` stand-in: a binary labelmap `(K, J, I)` (filled by
    `vtkMRMLSegmentationNode.GetBinaryLabelmapRepresentation`)."""

    def __init__(self):
        self.mask = None


class SegmentationNode(NodeBase):
    """`vtkMRMLSegmentationNode` stand-in: its vtkSegmentation, display node, reference geometry and
    GetBinaryLabelmapRepresentation(segmentId, vtkOrientedImageData)."""

    className = "vtkMRMLSegmentationNode"

    def __init__(self, name="Segmentation"):
        self.name = name
        self.segmentation = Segmentation()
        self.reference = None
        self.display = SegmentationDisplayNode()
        SCENE.add(self)

    def GetBinaryLabelmapRepresentation(self, segId, image):
        mask = self.segmentation.masks.get(segId)
        image.mask = None if mask is None else np.array(mask)
        return mask is not None

    def CreateDefaultDisplayNodes(self):
        pass

    def GetDisplayNode(self):
        return self.display

    def GetSegmentation(self):
        return self.segmentation

    def SetReferenceImageGeometryParameterFromVolumeNode(self, node):
        self.reference = node


class Scene:
    """`vtkMRMLScene` stand-in: AddNewNodeByClass for the node classes the actions create, RemoveNode."""

    def __init__(self):
        self.nodes = {}

    def add(self, node):
        self.nodes[node.GetID()] = node
        return node

    def AddNewNodeByClass(self, className, name=""):
        if className == "vtkMRMLSegmentationNode":
            return SegmentationNode(name)
        if "Transform" in className:
            node = TransformNode(name)
            node.className = className
            return self.add(node)
        if "VolumeNode" in className:
            node = VolumeNode(np.zeros((1, 1, 1)), np.eye(4), name)
            node.className = className
            return self.add(node)
        raise ValueError(className)

    def RemoveNode(self, node):
        self.nodes.pop(node.GetID(), None)


SCENE = Scene()


class Util:
    """`slicer.util` stand-in (Base/Python/slicer/util.py): the accessors the bridge calls, with Slicer's axis order
    and view semantics. `arrayFromSegmentBinaryLabelmap` returns a copy on the reference grid (zeros for an empty
    segment), like Slicer's export to a temporary labelmap."""

    @staticmethod
    def vtkMatrixFromArray(a):
        return Matrix4x4(a)

    @staticmethod
    def arrayFromVTKMatrix(m):
        return m.a.copy()

    @staticmethod
    def arrayFromVolume(node):
        return node.kji  # a view, as in Slicer

    @staticmethod
    def updateVolumeFromArray(node, arrayKJI):
        node.kji = np.array(arrayKJI)
        node.mtime = next(_MTIMES)

    @staticmethod
    def arrayFromSegmentBinaryLabelmap(segNode, segId, referenceNode):
        mask = segNode.segmentation.masks.get(segId)
        if mask is None:
            return np.zeros(referenceNode.kji.shape[:3], np.uint8)
        return np.array(mask)

    @staticmethod
    def updateSegmentBinaryLabelmapFromArray(maskKJI, segNode, segId, referenceNode):
        if tuple(np.shape(maskKJI)) != tuple(referenceNode.kji.shape[:3]):
            raise ValueError("the array does not match the reference volume")  # Slicer refuses such arrays too
        segNode.segmentation.masks[segId] = np.array(maskKJI)
        segNode.segmentation.InvokeEvent(Segmentation.SegmentModified)


#: (vtk, slicer, numpy_support) stand-ins for the grid-transform wrappers.
VTK_MODULES = (
    types.SimpleNamespace(vtkImageData=ImageData, vtkMatrix4x4=Matrix4x4, VTK_DOUBLE=11),
    types.SimpleNamespace(vtkOrientedGridTransform=OrientedGridTransform),
    types.SimpleNamespace(vtk_to_numpy=lambda scalars: scalars),
)


def fake_slicer_module():
    """A `slicer` stand-in module: util, mrmlScene (for the node-level actions outside Slicer)."""
    return types.SimpleNamespace(util=Util, mrmlScene=SCENE)
