"""Dice against a reference (`multimodalgen.dice`): the reference's classes are scored, classes only the prediction
has are listed as unscored, and named maps are paired by name whatever their label values."""

import numpy as np
import pytest

from multimodalgen.dice import dice_scores
from multimodalgen.verbs.messages import _dice
from multimodalgen.volume import Volume


def _labels(array: np.ndarray, names: dict[int, str] | None = None) -> Volume:
    meta = {"segments": [{"label": v, "name": n, "color": [1, 0, 0]} for v, n in names.items()]} if names else {}
    return Volume(array.astype(np.uint8), np.eye(4), "LABEL", meta)


def _tissues():
    """Prediction: grey 1 (x < 4), white 2 (4..7), CSF 3 (8..9), skull 4 (10..11) along x of a 12 x 4 x 4 grid."""
    pred = np.zeros((12, 4, 4), np.uint8)
    pred[:4], pred[4:8], pred[8:10], pred[10:] = 1, 2, 3, 4
    return pred


def test_a_class_the_reference_lacks_is_unscored_not_zero():
    pred = _tissues()
    reference = np.where(pred == 4, 0, pred)                       # a grey/white/CSF reference: no skull class
    scores = dice_scores(_labels(pred), _labels(reference))
    assert scores["dice_mean"] == 1.0 and "dice_4" not in scores   # was 0.75: skull counted as Dice 0
    assert scores["matched_by"] == "value" and scores["unscored"] == ["4"] and scores["scored"] == ["1", "2", "3"]


def test_named_maps_are_paired_by_name_whatever_their_values():
    pred = _tissues()
    names = {1: "grey matter", 2: "white matter", 3: "cerebrospinal fluid", 4: "skull"}
    reference = np.select([pred == 3, pred == 1, pred == 2], [1, 2, 3], 0)   # CSF 1, GM 2, WM 3
    reference[0] = 0                                                          # one grey slab missed by the reference
    scores = dice_scores(_labels(pred, names), _labels(reference, {1: "CSF", 2: "GM", 3: "WM"}))
    assert scores["matched_by"] == "name" and scores["scored"] == ["cerebrospinal fluid", "grey matter",
                                                                   "white matter"]
    assert scores["dice_1"] == 1.0 and scores["dice_3"] == 1.0
    assert scores["dice_2"] == pytest.approx(2 * 3 / (4 + 3), abs=1e-6)
    assert scores["unscored"] == ["skull"]
    by_value = dice_scores(_labels(pred), _labels(reference))                # unnamed: by value, which is wrong here
    assert by_value["matched_by"] == "value" and by_value["dice_mean"] < 0.2
    message = _dice({"dice": scores})
    assert "by name" in message and "not in the reference: skull" in message


def test_placeholder_or_disjoint_names_fall_back_to_values_and_a_missing_class_scores_zero():
    pred = np.zeros((8, 4, 4), np.uint8)
    pred[:4] = 1
    reference = np.zeros_like(pred)
    reference[:4], reference[4:] = 1, 2
    for names in ({1: "Segment_1", 2: "Segment_2"}, {1: "tumor", 2: "oedema"}):
        scores = dice_scores(_labels(pred, {1: "tumour"}), _labels(reference, names))
        assert scores["matched_by"] == "value" and scores["dice_1"] == 1.0 and scores["dice_2"] == 0.0
    assert dice_scores(_labels(pred), _labels(np.zeros_like(pred))) == {"matched_by": "value", "scored": [],
                                                                        "unscored": ["1"]}


def test_a_nifti_reference_is_paired_by_the_names_in_its_sidecar(tmp_path):
    """A NIfTI label map written with names (`<name>.labels.json` beside it, as `segment` writes it) keeps them when
    read back, so Dice pairs classes by name; without the sidecar the same files pair by value."""
    from multimodalgen.dice import dice_files
    from multimodalgen.io.writers import write_named_labels

    pred = _tissues()
    names = {1: "grey matter", 2: "white matter", 3: "cerebrospinal fluid", 4: "skull"}
    reference = np.select([pred == 3, pred == 1, pred == 2], [1, 2, 3], 0)   # CSF 1, GM 2, WM 3
    write_named_labels(_labels(pred, names), tmp_path / "pred.nii.gz")
    outputs = write_named_labels(_labels(reference, {1: "CSF", 2: "GM", 3: "WM"}), tmp_path / "truth.nii.gz")
    scores = dice_files(tmp_path / "pred.nii.gz", tmp_path / "truth.nii.gz")
    assert scores["matched_by"] == "name" and scores["dice_mean"] == 1.0
    outputs["labels"].unlink()
    scores = dice_files(tmp_path / "pred.nii.gz", tmp_path / "truth.nii.gz")
    assert scores["matched_by"] == "value" and scores["dice_mean"] == 0.0
