"""The `fewshot` verb (painting, support and task modes, bad input exit codes) and the support-volume mode."""

from __future__ import annotations

import numpy as np
import pytest

from fewshot_helpers import dice, make_case, paint
from multimodalgen.cli.main import main
from multimodalgen.io import read_label, write_volume
from multimodalgen.volume import Volume, same_grid


@pytest.fixture
def files(tmp_path):
    image, truth, affine = make_case()
    write_volume(Volume(image, affine, "T1"), tmp_path / "t1.nii.gz")
    write_volume(Volume(paint(truth, (3, 6, 8)), affine, "LABEL"), tmp_path / "painting.nii.gz")
    write_volume(Volume(truth, affine, "LABEL"), tmp_path / "truth.nii.gz")
    image2, truth2, _ = make_case(seed=7, shift=(1.5, 1.0, 0.0))
    write_volume(Volume(image2, affine, "T1"), tmp_path / "query.nii.gz")
    write_volume(Volume(truth2, affine, "LABEL"), tmp_path / "query_truth.nii.gz")
    return tmp_path


def test_cli_painting_mode_and_task(files):
    out = files / "out.nii.gz"
    code = main(["--progress", "none", "fewshot", "--image", f"T1={files / 't1.nii.gz'}", "--annotations",
                 str(files / "painting.nii.gz"), "--out", str(out), "--axis", "2", "--encoder", "off",
                 "--save-task", str(files / "task")])
    assert code == 0
    result, truth = read_label(out), read_label(files / "truth.nii.gz")
    assert same_grid(result, truth)
    np.testing.assert_array_equal(result.array[:, :, 6], truth.array[:, :, 6])
    assert dice(result.array == 1, truth.array == 1) > 0.8
    applied = files / "applied.nii.gz"
    assert main(["--progress", "none", "fewshot", "--apply-task", str(files / "task"), "--image",
                 f"T1={files / 'query.nii.gz'}", "--out", str(applied)]) == 0
    assert dice(read_label(applied).array == 1, read_label(files / "query_truth.nii.gz").array == 1) > 0.7


def test_cli_support_mode(files):
    out = files / "support_out.nii.gz"
    code = main(["--progress", "none", "fewshot", "--support-image", f"T1={files / 't1.nii.gz'}",
                 "--support-label", str(files / "truth.nii.gz"), "--query", f"T1={files / 'query.nii.gz'}",
                 "--out", str(out), "--register", "off", "--encoder", "off"])
    assert code == 0
    result, truth = read_label(out), read_label(files / "query_truth.nii.gz")
    for label in (1, 2):
        assert dice(result.array == label, truth.array == label) > 0.7, label


@pytest.mark.parametrize("extra, message", [
    (["--labels", "1"], "not requested"),
    (["--axis", "7"], "slice axis"),
    (["--support-label", "x.nii.gz"], "one few-shot mode"),
])
def test_cli_bad_input_exit_2(files, capsys, extra, message):
    code = main(["--progress", "none", "fewshot", "--image", str(files / "t1.nii.gz"), "--annotations",
                 str(files / "painting.nii.gz"), "--out", str(files / "o.nii.gz"), "--encoder", "off"] + extra)
    assert code == 2
    assert message in capsys.readouterr().err


def test_cli_empty_painting_exit_2(files, capsys):
    image, truth, affine = make_case()
    write_volume(Volume(np.zeros_like(truth), affine, "LABEL"), files / "empty.nii.gz")
    code = main(["--progress", "none", "fewshot", "--image", str(files / "t1.nii.gz"), "--annotations",
                 str(files / "empty.nii.gz"), "--out", str(files / "o.nii.gz")])
    assert code == 2 and "no painted voxel" in capsys.readouterr().err
    assert not (files / "o.nii.gz").exists()


def test_support_api_validation():
    from multimodalgen.errors import UserInputError
    from multimodalgen.fewshot import segment_from_support

    image, truth, affine = make_case()
    support = [Volume(image, affine, "T1")]
    query = [Volume(make_case(seed=2)[0], affine, "T1")]
    with pytest.raises(UserInputError, match="not in the support labels"):
        segment_from_support(support, Volume(truth, affine, "LABEL"), query, labels=[3], register="off")
    with pytest.raises(UserInputError, match="empty"):
        segment_from_support(support, Volume(np.zeros_like(truth), affine, "LABEL"), query, register="off")
    with pytest.raises(UserInputError, match="different channels"):
        segment_from_support(support, Volume(truth, affine, "LABEL"), query + query, register="off")
    with pytest.raises(UserInputError, match="do not pair up"):
        segment_from_support([support, support], [Volume(truth, affine, "LABEL")], query, register="off")
