"""Small stand-ins for the Slicer/VTK objects the bridge touches, offering the same method names.

They hold numpy arrays in Slicer's layout (volumes `(K, J, I)`, displacement grids `(K, J, I, 3)`) and return
*views* from the `arrayFrom*` accessors, like Slicer does, so a bridge that forgets to copy is caught.
"""

from __future__ import annotations

import types

import numpy as np


class Matrix4x4:
    """vtkMatrix4x4 stand-in."""

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
    """ID, name, class, node references and parent transform, as MRML nodes have them."""

    className = "vtkMRMLNode"

    def GetName(self):
        return self.name

    def GetID(self):
        return f"{self.className}_{self.name}"

    def IsA(self, className):
        return className == self.className or (className == "vtkMRMLTransformNode" and "Transform" in self.className)

    def SetNodeReferenceID(self, role, nodeId):
        self.__dict__.setdefault("references", {})[role] = nodeId

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
        self.linear = False

    def GetTransformFromParent(self):
        return self.fromParentGrid


class VolumeNode(NodeBase):
    """vtkMRMLScalarVolumeNode stand-in storing its voxels as (K, J, I) like VTK memory."""

    className = "vtkMRMLScalarVolumeNode"

    def __init__(self, arrayKJI, ijkToRas, name="vol", parent=None):
        self.kji = np.array(arrayKJI)
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
                                     GetMTime=lambda: id(self.kji))


class Segment:
    def __init__(self, name, color):
        self.name, self.color = name, tuple(color)

    def GetName(self):
        return self.name

    def GetColor(self):
        return self.color


class Segmentation:
    def __init__(self):
        self.order: list[str] = []
        self.segments: dict[str, Segment] = {}
        self.masks: dict[str, np.ndarray] = {}

    def GetNumberOfSegments(self):
        return len(self.order)

    def GetNthSegmentID(self, n):
        return self.order[n]

    def GetSegment(self, segId):
        return self.segments[segId]

    def GetSegmentIdBySegmentName(self, name):
        return next((k for k, s in self.segments.items() if s.name == name), "")

    def AddEmptySegment(self, segId, name, color):
        segId = segId or f"Segment_{len(self.order) + 1}"
        self.order.append(segId)
        self.segments[segId] = Segment(name, color)
        return segId


class SegmentationNode(NodeBase):
    className = "vtkMRMLSegmentationNode"

    def __init__(self, name="Segmentation"):
        self.name = name
        self.segmentation = Segmentation()
        self.reference = None
        self.display = types.SimpleNamespace(opacity=1.0)
        self.display.SetOpacity = lambda v: setattr(self.display, "opacity", v)
        SCENE.add(self)

    def CreateDefaultDisplayNodes(self):
        pass

    def GetDisplayNode(self):
        return self.display

    def GetSegmentation(self):
        return self.segmentation

    def SetReferenceImageGeometryParameterFromVolumeNode(self, node):
        self.reference = node


class Scene:
    """vtkMRMLScene stand-in: AddNewNodeByClass for the node classes the actions create."""

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
    """slicer.util stand-in: the accessors the bridge calls, with Slicer's axis order and view semantics."""

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

    @staticmethod
    def arrayFromSegmentBinaryLabelmap(segNode, segId, referenceNode):
        return segNode.segmentation.masks[segId]

    @staticmethod
    def updateSegmentBinaryLabelmapFromArray(maskKJI, segNode, segId, referenceNode):
        segNode.segmentation.masks[segId] = np.array(maskKJI)


#: (vtk, slicer, numpy_support) stand-ins for the grid-transform wrappers.
VTK_MODULES = (
    types.SimpleNamespace(vtkImageData=ImageData, vtkMatrix4x4=Matrix4x4, VTK_DOUBLE=11),
    types.SimpleNamespace(vtkOrientedGridTransform=OrientedGridTransform),
    types.SimpleNamespace(vtk_to_numpy=lambda scalars: scalars),
)


def fake_slicer_module():
    """A `slicer` stand-in module: util, mrmlScene (for the node-level actions outside Slicer)."""
    return types.SimpleNamespace(util=Util, mrmlScene=SCENE)
