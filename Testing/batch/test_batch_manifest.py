"""Manifest parsing and task-option validation."""

from __future__ import annotations

import pytest

from multimodalgen.batch.manifest import read_manifest
from multimodalgen.batch.tasks import get_task, validate_options
from multimodalgen.errors import UserInputError


def _write(tmp_path, text, name="STUDIES.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_register_manifest_resolves_relative_paths(tmp_path):
    (tmp_path / "a").mkdir()
    for name in ("f.nii.gz", "m.nii.gz", "l.nii.gz"):
        (tmp_path / "a" / name).write_bytes(b"x")
    sub = tmp_path / "lists"
    sub.mkdir()
    manifest = _write(sub, "study_id,Fixed,moving,moving_labels\np1,../a/f.nii.gz,../a/m.nii.gz,\n"
                           "p2,../a/f.nii.gz,../a/m.nii.gz,../a/l.nii.gz\n")
    parsed = read_manifest(manifest, get_task("register"))
    assert [s.study_id for s in parsed.studies] == ["p1", "p2"]
    assert parsed.studies[0].inputs["fixed"] == str((tmp_path / "a" / "f.nii.gz").resolve())
    assert parsed.studies[0].inputs["moving_labels"] is None
    assert parsed.studies[1].inputs["moving_labels"].endswith("l.nii.gz")
    assert all(not s.problems for s in parsed.studies)


def test_missing_files_are_per_study_problems(tmp_path):
    (tmp_path / "f.nii.gz").write_bytes(b"x")
    manifest = _write(tmp_path, "study_id,fixed,moving\nok,f.nii.gz,f.nii.gz\nbroken,f.nii.gz,gone.nii.gz\n"
                                "empty,f.nii.gz,\n")
    studies = {s.study_id: s for s in read_manifest(manifest, get_task("register")).studies}
    assert studies["ok"].problems == []
    assert "moving" in studies["broken"].problems[0] and "does not exist" in studies["broken"].problems[0]
    assert studies["empty"].problems == ["moving: empty cell"]
    assert studies["broken"].row == 3


@pytest.mark.parametrize("text, words", [
    ("study_id,fixed\np1,a\n", ["lacks column", "moving"]),
    ("id,fixed,moving\np1,a,b\n", ["no study_id column"]),
    ("study_id,fixed,moving,warp\np1,a,b,c\n", ["warp", "does not use"]),
    ("study_id,fixed,moving\np1,a,b\np1,c,d\n", ["duplicate study_id 'p1'", "lines 2 and 3"]),
    ("study_id,fixed,moving\n../up,a,b\n", ["invalid study_id", "../up"]),
    ("study_id,fixed,moving\n", ["has no studies"]),
    ("", ["is empty"]),
])
def test_whole_manifest_errors(tmp_path, text, words):
    with pytest.raises(UserInputError) as info:
        read_manifest(_write(tmp_path, text), get_task("register"))
    for word in words:
        assert word in str(info.value)


def test_manifest_not_found(tmp_path):
    with pytest.raises(UserInputError, match="manifest not found"):
        read_manifest(tmp_path / "nope.csv", get_task("resample"))


def test_modality_columns_case_insensitive_and_subsets(tmp_path):
    (tmp_path / "t1.nrrd").write_bytes(b"x")
    manifest = _write(tmp_path, "study_id,t1,FLAIR,Label\np1,t1.nrrd,,\np2,,,\n")
    parsed = read_manifest(manifest, get_task("segment"))
    assert parsed.columns == ["T1", "FLAIR", "label"]
    first, second = parsed.studies
    assert first.inputs["T1"].endswith("t1.nrrd") and first.inputs["FLAIR"] is None and not first.problems
    assert second.problems == ["no modality given (every modality cell is empty)"]
    with pytest.raises(UserInputError, match="not modality names"):
        read_manifest(_write(tmp_path, "study_id,T1,brain\np1,t1.nrrd,x\n", "b.csv"), get_task("segment"))


def test_validate_options(tmp_path):
    assert validate_options(get_task("resample"), {"spacing": "2"}) == {"spacing": 2.0, "format": "nii.gz"}
    with pytest.raises(UserInputError, match="--preset do not apply to --task resample"):
        validate_options(get_task("resample"), {"preset": "fast"})
    with pytest.raises(UserInputError, match="invalid --spacing"):
        validate_options(get_task("resample"), {"spacing": -1})
    with pytest.raises(UserInputError, match="invalid --format"):
        validate_options(get_task("resample"), {"format": "png"})
    with pytest.raises(UserInputError, match="needs --fewshot-task"):
        validate_options(get_task("fewshot-apply"), {})
    with pytest.raises(UserInputError, match="--fewshot-task does not exist"):
        validate_options(get_task("fewshot-apply"), {"fewshot_task": str(tmp_path / "no.json")})
    task_file = tmp_path / "task.json"
    task_file.write_text("{}")
    assert validate_options(get_task("fewshot-apply"), {"fewshot-task": str(task_file)}) == \
        {"fewshot_task": str(task_file.resolve())}
