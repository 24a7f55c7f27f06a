"""The effect's fast exchange files (Slicer `(K, J, I)` arrays through SimpleITK, no axis reordering) are read by the
backend exactly as the general bridge would hand the same node over (array `(I, J, K)`, RAS affine), for an
oblique, flipped grid; results on another grid are refused; the effect's stand-in logic API matches the module's."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

from MultiModalGenLib import bridge
from SegmentEditorMultiModalGenLib import exchange
from multimodalgen.errors import UserInputError
from multimodalgen.io import read_label, read_volume, write_label
from multimodalgen.volume import Volume

ROOT = Path(__file__).resolve().parents[2]
THETA = np.deg2rad(25)
IJK_TO_RAS = np.array([[-np.cos(THETA) * 1.5, -np.sin(THETA) * 0.8, 0, 12.0],
                       [-np.sin(THETA) * 1.5, np.cos(THETA) * 0.8, 0, -7.0],
                       [0, 0, -2.5, 30.0], [0, 0, 0, 1]])


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_backend_reads_exchange_files_like_bridge_volumes(tmp_path, suffix):
    rng = np.random.default_rng(0)
    kji = rng.normal(size=(5, 6, 7)).astype(np.float32)
    path = exchange.writeSlicerArray(kji, IJK_TO_RAS, tmp_path / ("image" + suffix), compress=suffix == ".nii.gz")
    volume = read_volume(path)
    assert np.array_equal(volume.array, bridge.slicerArrayToVolumeArray(kji))
    assert np.allclose(volume.affine, IJK_TO_RAS, atol=1e-5)
    labels = (kji > 0.5).astype(np.uint8)
    exchange.writeSlicerArray(labels, IJK_TO_RAS, tmp_path / ("label" + suffix))
    assert np.array_equal(read_label(tmp_path / ("label" + suffix)).array, bridge.slicerArrayToVolumeArray(labels))
    # and a label map the backend writes comes back in Slicer's order
    write_label(Volume(bridge.slicerArrayToVolumeArray(labels), IJK_TO_RAS, "LABEL"), tmp_path / ("out" + suffix))
    back = exchange.readSlicerLabel(tmp_path / ("out" + suffix), IJK_TO_RAS, labels.shape)
    assert np.array_equal(back, labels)


def test_result_on_another_grid_is_refused(tmp_path):
    labels = np.zeros((5, 6, 7), np.uint8)
    exchange.writeSlicerArray(labels, IJK_TO_RAS, tmp_path / "out.nii")
    moved = IJK_TO_RAS.copy()
    moved[0, 3] += 1.0
    with pytest.raises(UserInputError, match="not on the source volume's grid"):
        exchange.readSlicerLabel(tmp_path / "out.nii", moved, labels.shape)
    with pytest.raises(UserInputError, match="not on the source volume's grid"):
        exchange.readSlicerLabel(tmp_path / "out.nii", IJK_TO_RAS, (5, 6, 8))
    exchange.writeSlicerArray(labels.astype(np.float32), IJK_TO_RAS, tmp_path / "float.nii")
    with pytest.raises(UserInputError, match="not a label map"):
        exchange.readSlicerLabel(tmp_path / "float.nii", IJK_TO_RAS, labels.shape)


def test_logic_stand_in_offers_only_what_the_module_logic_has():
    tree = ast.parse((ROOT / "MultiModalGen" / "MultiModalGen.py").read_text())
    logic = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "MultiModalGenLogic")
    methods = {f.name: [a.arg for a in f.args.args] for f in logic.body if isinstance(f, ast.FunctionDef)}
    standin = ast.parse((ROOT / "Testing" / "slicer" / "segment_editor_standins.py").read_text())
    cls = next(n for n in standin.body if isinstance(n, ast.ClassDef) and n.name == "LogicStandIn")
    for f in cls.body:
        if isinstance(f, ast.FunctionDef) and f.name != "__init__":
            assert f.name in methods, f.name
            assert [a.arg for a in f.args.args] == methods[f.name], f.name


def test_worker_output_suffix_door_key():
    from multimodalgen.worker.verb_task import _with_suffix

    assert _with_suffix("segmentation.nii.gz", None) == "segmentation.nii.gz"
    assert _with_suffix("segmentation.nii.gz", ".nii") == "segmentation.nii"
    assert _with_suffix("warped.nii.gz", ".nrrd") == "warped.nrrd"
    with pytest.raises(UserInputError, match="unsupported output_suffix"):
        _with_suffix("segmentation.nii.gz", ".png")
    with pytest.raises(UserInputError, match="image outputs only"):
        _with_suffix(".", ".nii")
