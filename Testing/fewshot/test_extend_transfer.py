"""Extension beyond the painted range, confidence / suggested slice, saved tasks that transfer, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fewshot_helpers import dice, make_case, paint
from multimodalgen.errors import UserInputError
from multimodalgen.volume import Volume


def _tube(shape=(30, 30, 40), length=15.0, seed=0):
    """A bright elongated ellipsoid along k (1 mm grid): (image, truth, affine)."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.arange(s, dtype=np.float32) for s in shape], indexing="ij"))
    centre = np.array([15.0, 14.0, 20.0])
    radii = np.array([6.0, 5.0, length])
    truth = ((((grid - centre[:, None, None, None]) / radii[:, None, None, None]) ** 2).sum(0) <= 1.0)
    image = 100.0 + 250.0 * truth + rng.normal(0, 20.0, shape)
    return image.astype(np.float32), truth.astype(np.uint8), np.eye(4)


def _unpainted_dice(labels, truth, slices, axis=2):
    keep = np.ones(truth.shape[axis], bool)
    keep[list(slices)] = False
    return dice(labels[..., keep] > 0, truth[..., keep] > 0)


def test_extension_goes_past_the_outer_painted_slices(fast_config):
    import dataclasses

    from multimodalgen.fewshot.annotations import find_annotations
    from multimodalgen.fewshot.engine import fit_predict
    from multimodalgen.fewshot.extend import ExtendConfig
    from multimodalgen.fewshot.features import FeatureSource

    image, truth, affine = _tube()
    slices = (17, 20, 23)  # three close slices in the middle of a structure spanning k = 6 ... 34
    painting = paint(truth, slices)
    ann = find_annotations(painting, affine, axis=2)
    source = FeatureSource(image[None], affine, ["T1"], fast_config.features)
    on = fit_predict(source, ann, fast_config)
    off = fit_predict(source, ann, dataclasses.replace(fast_config, extend=ExtendConfig(enabled=False)))
    present = np.flatnonzero(on.labels.any(axis=(0, 1)))
    assert present.min() <= 10 and present.max() >= 30, present  # well past 17 ... 23
    assert on.report["extended_slices"][1]["below"] >= 6 and on.report["extended_slices"][1]["above"] >= 6
    d_on, d_off = _unpainted_dice(on.labels, truth, slices), _unpainted_dice(off.labels, truth, slices)
    assert d_on > 0.9 and d_on > d_off + 0.05, (d_on, d_off)
    for s in slices:  # painted slices kept exactly
        np.testing.assert_array_equal(on.labels[:, :, s], painting[:, :, s])
    # it stops where the structure ends: nothing beyond the tips by more than 2 slices
    assert present.min() >= 3 and present.max() <= 37


def test_extension_works_along_another_axis(fast_config):
    from multimodalgen.fewshot.annotations import find_annotations
    from multimodalgen.fewshot.engine import fit_predict
    from multimodalgen.fewshot.features import FeatureSource

    image, truth, affine = _tube()
    image, truth = np.moveaxis(image, 2, 0).copy(), np.moveaxis(truth, 2, 0).copy()
    painting = np.zeros_like(truth)
    painting[[17, 20, 23]] = truth[[17, 20, 23]]
    result = fit_predict(FeatureSource(image[None], affine, ["T1"], fast_config.features),
                         find_annotations(painting, affine, axis=0), fast_config)
    present = np.flatnonzero(result.labels.any(axis=(1, 2)))
    assert present.min() <= 10 and present.max() >= 30


def test_confidence_and_suggested_slice_are_reported(case, fast_config):
    from multimodalgen.fewshot.session import FewShotSession

    image, truth = case
    result = FewShotSession([image], config=fast_config).segment(truth.with_array(paint(truth.array, (3, 8))))
    report = result.metadata["fewshot"]
    assert set(report["confidence"]) == {1, 2}
    assert all(0.0 <= v <= 1.0 for v in report["confidence"].values())
    hint = report["suggested_slice"]
    assert hint["axis"] == 2 and hint["index"] not in (3, 8) and 0 <= hint["index"] < truth.shape3d[2]


def test_confidence_falls_with_an_unsure_result():
    from multimodalgen.fewshot.confidence import confidence_report

    labels_box = np.zeros((6, 6, 6), np.uint8)
    labels_box[1:5, 1:5, 1:5] = 1
    known = np.zeros((6, 6, 6), bool)
    known[:, :, 2] = True
    sure = np.where(labels_box > 0, 8.0, -8.0)[None]
    unsure = sure.copy()
    unsure[0, :, :, 4] = 0.5  # one slice undecided
    c_sure, hint_sure = confidence_report(sure, labels_box, known, (1,), 2, (0, 0, 10))
    c_unsure, hint = confidence_report(unsure, labels_box, known, (1,), 2, (0, 0, 10))
    assert c_sure[1] == 1.0 and hint_sure is None
    assert c_unsure[1] < 0.8 and hint == {"label": 1, "axis": 2, "index": 14, "uncertainty_voxels": pytest.approx(36 * 0.9, 0.1)}


def test_task_reproduces_the_session_and_refuses_misfits(case, fast_config, tmp_path):
    from multimodalgen.fewshot.session import FewShotSession
    from multimodalgen.fewshot.task import apply_task, load_task

    image, truth = case
    session = FewShotSession([image], config=fast_config)
    own = session.segment(truth.with_array(paint(truth.array, (3, 6, 8))))
    folder = session.save_task(tmp_path / "task")
    task = load_task(folder)
    same = apply_task(task, [image])
    assert "no registration" in same.metadata["fewshot"]["alignment"]
    for label in (1, 2):
        assert dice(same.array == label, own.array == label) >= 0.95, label
    assert not [n for n in same.metadata["fewshot"]["notes"] if n.startswith("warning")]
    # an image of another kind (contrast inverted, still called T1): the result is flagged, not silent
    inverted = Volume(image.array.max() - image.array, image.affine, "T1")
    flagged = apply_task(task, [inverted], align="none")
    assert any("does not look like" in n for n in flagged.metadata["fewshot"]["notes"])
    # voxel size far outside the task's: refused
    coarse = Volume(image.array, np.diag([4.0, 4.0, 12.0, 1.0]), "T1")
    with pytest.raises(UserInputError, match="voxel size"):
        apply_task(task, [coarse])
    # other modality: refused
    with pytest.raises(UserInputError, match="trained on T1"):
        apply_task(task, [Volume(image.array, image.affine, "CT")])
    # a task written by another format version: refused
    data = json.loads((folder / "task_config.json").read_text())
    data["format_version"] = 1
    (folder / "task_config.json").write_text(json.dumps(data))
    with pytest.raises(UserInputError, match="save the task again"):
        load_task(folder)


def test_task_warm_start_with_other_labels_is_refused(case, fast_config, tmp_path):
    from multimodalgen.fewshot.session import FewShotSession

    image, truth = case
    session = FewShotSession([image], config=fast_config)
    session.segment(truth.with_array(paint(truth.array, (3, 6, 8))))
    folder = session.save_task(tmp_path / "task")
    only_one = np.where(truth.array == 1, 1, 0).astype(np.uint8)
    with pytest.raises(UserInputError, match="not the task's"):
        FewShotSession([image], config=fast_config, task=folder).segment(truth.with_array(paint(only_one, (6,))))


def test_support_volume_control_matches_the_transferred_size():
    from multimodalgen.fewshot.support import match_volume

    logit = np.linspace(-5, 5, 1000).reshape(10, 10, 10).astype(np.float32)  # 500 positive voxels
    shifted, offset = match_volume(logit, 300.0, 0.1)
    assert 270 <= int((shifted > 0).sum()) <= 330 and offset < 0
    same, zero = match_volume(logit, 500.0, 0.1)
    assert zero == 0.0 and int((same > 0).sum()) == 500


def test_cli_bad_task_and_support_input_exit_2(tmp_path, capsys):
    from multimodalgen.cli.main import main
    from multimodalgen.io import write_volume

    image, truth, affine = make_case()
    write_volume(Volume(image, affine, "T1"), tmp_path / "t1.nii.gz")
    write_volume(Volume(np.zeros_like(truth), affine, "LABEL"), tmp_path / "empty.nii.gz")
    out = tmp_path / "o.nii.gz"
    # a support label with no foreground
    code = main(["--progress", "none", "fewshot", "--support-image", f"T1={tmp_path / 't1.nii.gz'}",
                 "--support-label", str(tmp_path / "empty.nii.gz"), "--query", f"T1={tmp_path / 't1.nii.gz'}",
                 "--out", str(out), "--register", "off"])
    assert code == 2 and "no foreground" in capsys.readouterr().err and not out.exists()
    # a task folder from another version
    (tmp_path / "task").mkdir()
    (tmp_path / "task" / "task_config.json").write_text(json.dumps({"kind": "fewshot-task", "format_version": 1}))
    code = main(["--progress", "none", "fewshot", "--apply-task", str(tmp_path / "task"), "--image",
                 f"T1={tmp_path / 't1.nii.gz'}", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "format 1" in err and len(err.strip().splitlines()) == 1 and not out.exists()
    # a painting on another grid
    write_volume(Volume(paint(truth, (3, 6)), np.diag([2.0, 2.0, 3.0, 1.0]), "LABEL"), tmp_path / "other.nii.gz")
    code = main(["--progress", "none", "fewshot", "--image", str(tmp_path / "t1.nii.gz"), "--annotations",
                 str(tmp_path / "other.nii.gz"), "--out", str(out)])
    assert code == 2 and "another grid" in capsys.readouterr().err and not out.exists()
