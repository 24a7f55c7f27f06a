"""Inside-Slicer checks of the bridge with real MRML/VTK objects (run by ctest through slicer_add_python_unittest).

Outside Slicer the same math is tested with stand-ins (Testing/slicer/test_bridge.py); here the real
vtkOrientedGridTransform, arrayFromVolume and segmentation conversions confirm the conventions.
"""

import unittest

import numpy as np
import slicer
import vtk

from MultiModalGenLib import bridge


class MultiModalGenSlicerBridgeTest(unittest.TestCase):
    def setUp(self):
        slicer.mrmlScene.Clear()

    def test_oblique_flipped_volume_round_trip(self):
        theta = np.deg2rad(20)
        ijkToRas = np.array([[-np.cos(theta) * 1.5, -np.sin(theta) * 0.8, 0, 12.0],
                             [-np.sin(theta) * 1.5, np.cos(theta) * 0.8, 0, -7.0],
                             [0, 0, 2.5, 30.0], [0, 0, 0, 1]])
        kji = np.zeros((6, 7, 8), dtype=np.int16)
        kji[4, 2, 5] = 300
        node = slicer.util.addVolumeFromArray(kji, ijkToRAS=ijkToRas)
        volume = bridge.volumeFromNode(node)
        self.assertEqual(volume.array.shape, (8, 7, 6))
        self.assertEqual(volume.array[5, 2, 4], 300)
        self.assertTrue(np.allclose(volume.affine, ijkToRas))
        volume.array[0, 0, 0] = 1
        self.assertEqual(slicer.util.arrayFromVolume(node)[0, 0, 0], 0)
        copy = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode")
        bridge.updateNodeFromVolume(copy, volume)
        m = vtk.vtkMatrix4x4()
        copy.GetIJKToRASMatrix(m)
        self.assertTrue(np.allclose(slicer.util.arrayFromVTKMatrix(m), ijkToRas))
        self.assertEqual(slicer.util.arrayFromVolume(copy)[4, 2, 5], 300)

    def test_grid_transform_maps_fixed_points_to_moving_points(self):
        affine = np.diag([1.5, 2.0, -2.5, 1.0])
        affine[:3, 3] = [-20, 10, 40]
        rng = np.random.default_rng(0)
        field = rng.normal(scale=2.0, size=(3, 5, 6, 7)).astype(np.float32)
        node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLGridTransformNode")
        bridge.gridTransformFromField(node, field, affine)
        for ijk in ((1, 2, 3), (4, 0, 6), (2, 5, 1)):
            p = (affine @ [*ijk, 1])[:3]
            moved = np.array(node.GetTransformFromParent().TransformPoint(p))
            self.assertTrue(np.allclose(moved - p, field[:, ijk[0], ijk[1], ijk[2]], atol=1e-3))
        back, backAffine = bridge.fieldFromGridTransform(node)
        self.assertTrue(np.allclose(back, field, atol=1e-6) and np.allclose(backAffine, affine))

    def test_segmentation_label_round_trip(self):
        kji = np.zeros((5, 6, 7), dtype=np.int16)
        reference = slicer.util.addVolumeFromArray(kji)
        seg = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode")
        seg.CreateDefaultDisplayNodes()
        label = np.zeros((7, 6, 5), np.uint8)
        label[1:4, 2:5, 1:3] = 1
        label[5, 1, 4] = 2
        from multimodalgen.volume import Volume

        ids = bridge.updateSegmentationFromLabelVolume(seg, Volume(label, bridge.nodeAffine(reference), "LABEL"),
                                                       reference, {1: "liver", 2: "lesion"})
        back = bridge.labelVolumeFromSegmentation(seg, reference, [ids[1], ids[2]])
        self.assertTrue(np.array_equal(back.array, label))
        self.assertEqual([s["name"] for s in back.metadata["segments"]], ["liver", "lesion"])
