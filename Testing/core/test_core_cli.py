"""The command line: exit codes, one-line errors, JSON progress, info/convert/models/demo."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from multimodalgen.cli.main import COMMAND_MODULES, main
from multimodalgen.io import read_label, read_volume, write_label, write_volume

ROOT = Path(__file__).resolve().parents[2]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "multimodalgen.cli.main", *args], capture_output=True, text=True,
                          cwd=ROOT, env={"PYTHONPATH": str(ROOT / "MultiModalGen"), "PATH": "/usr/bin:/bin"},
                          timeout=120)


def test_every_command_module_imports():
    import importlib

    for name in COMMAND_MODULES:
        assert hasattr(importlib.import_module(name), "add_parser"), name


def test_info_text_and_json(tmp_path, volume, capsys):
    write_volume(volume, tmp_path / "v.nrrd")
    assert main(["info", str(tmp_path / "v.nrrd")]) == 0
    text = capsys.readouterr().out
    assert "spacing" in text and "orientation" in text
    assert main(["info", "--json", str(tmp_path / "v.nrrd")]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["shape"] == list(volume.shape3d)
    np.testing.assert_allclose(summary["spacing_mm"], volume.spacing, atol=1e-5)


def test_user_error_is_one_line_exit_2_no_traceback(tmp_path):
    result = run_cli("info", str(tmp_path / "missing.nii.gz"))
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("multimodalgen: error: file not found")
    assert "Traceback" not in result.stderr


def test_debug_shows_traceback(tmp_path):
    result = run_cli("--debug", "info", str(tmp_path / "missing.nii.gz"))
    assert result.returncode == 2 and "Traceback" in result.stderr


def test_usage_error_exit_2():
    result = run_cli("convert")
    assert result.returncode == 2 and "error" in result.stderr


def test_json_progress_events(tmp_path, volume):
    write_volume(volume, tmp_path / "in.nii.gz")
    result = run_cli("--progress", "json", "convert", str(tmp_path / "in.nii.gz"), str(tmp_path / "out.mha"),
                     "--spacing", "2")
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    progress = [e for e in events if e["event"] == "progress"]
    assert progress and all({"stage", "fraction", "message"} <= set(e) for e in progress)
    assert progress[-1]["fraction"] == 1.0
    assert events[-1]["event"] == "result" and events[-1]["outputs"]["output"].endswith("out.mha")
    np.testing.assert_allclose(read_volume(tmp_path / "out.mha").spacing, [2.0, 2.0, 2.0], atol=1e-5)


def test_json_error_event(tmp_path):
    result = run_cli("--progress", "json", "info", str(tmp_path / "missing.nii"))
    assert result.returncode == 2
    event = json.loads(result.stdout.splitlines()[-1])
    assert event["event"] == "error" and event["kind"] == "user" and "file not found" in event["message"]


def test_convert_label_to_seg_nrrd_and_back(tmp_path, label_volume):
    write_label(label_volume, tmp_path / "l.nii.gz")
    assert main(["--progress", "none", "convert", "--label", str(tmp_path / "l.nii.gz"),
                 str(tmp_path / "l.seg.nrrd")]) == 0
    np.testing.assert_array_equal(read_label(tmp_path / "l.seg.nrrd").array, label_volume.array)


def test_convert_keeps_the_names_of_a_nifti_label_sidecar(tmp_path, label_volume):
    """A NIfTI label map with its `<name>.labels.json` converted to `.seg.nrrd` keeps the segment names (they were
    dropped: the reader ignored the sidecar)."""
    from multimodalgen.io.writers import write_named_labels

    values = [int(v) for v in np.unique(label_volume.array) if v]
    label_volume.metadata["segments"] = [{"label": v, "name": f"structure {v}", "color": [1, 0, 0]} for v in values]
    write_named_labels(label_volume, tmp_path / "l.nii.gz")
    assert main(["--progress", "none", "convert", "--label", str(tmp_path / "l.nii.gz"),
                 str(tmp_path / "l.seg.nrrd")]) == 0
    segments = read_label(tmp_path / "l.seg.nrrd").metadata["segments"]
    assert {int(s["label"]): s["name"] for s in segments} == {v: f"structure {v}" for v in values}


def test_convert_reference_and_spacing_conflict(tmp_path, volume):
    write_volume(volume, tmp_path / "a.nii.gz")
    code = main(["--progress", "none", "convert", str(tmp_path / "a.nii.gz"), str(tmp_path / "b.nii.gz"),
                 "--reference", str(tmp_path / "a.nii.gz"), "--spacing", "1"])
    assert code == 2 and not (tmp_path / "b.nii.gz").exists()


def test_convert_unknown_output_type(tmp_path, volume):
    write_volume(volume, tmp_path / "a.nii.gz")
    assert main(["convert", str(tmp_path / "a.nii.gz"), str(tmp_path / "b.xyz")]) == 2


def test_models_list_runs(capsys, tmp_path, monkeypatch):
    adapters = tmp_path / "adapters" / "liver"
    adapters.mkdir(parents=True)
    (adapters / "adapter_config.json").write_text(json.dumps({"name": "liver", "kind": "adapter",
                                                               "version": "1"}))
    monkeypatch.setenv("MULTIMODALGEN_ADAPTERS", str(tmp_path / "adapters"))
    assert main(["models", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert any(r["name"] == "liver" and r["kind"] == "adapter" for r in rows)
    defaults = {r["kind"]: r["name"] for r in rows if r["default"]}
    from multimodalgen.models.registry import DEFAULT_MODELS

    assert defaults == DEFAULT_MODELS                  # exactly one default per shipped kind, and it is shipped


def test_unknown_device_is_user_error(tmp_path, volume):
    from multimodalgen.device import resolve_device
    from multimodalgen.errors import UserInputError

    with pytest.raises(UserInputError, match="unknown device"):
        resolve_device("tpu")
    assert str(resolve_device("cpu")) == "cpu"


def test_demo_io_step_on_shipped_samples(tmp_path):
    """The demo's I/O step runs on the shipped sample data (the engines' steps are tested in their own areas)."""
    from multimodalgen.cli.main import Context
    from multimodalgen.demo import sample_data_dir, step_io
    from multimodalgen.progress import Progress

    result = step_io(sample_data_dir(), tmp_path, Context("cpu", None, Progress.null(), False))
    for rel in result["outputs"]:
        assert (tmp_path / rel).stat().st_size > 0
    assert result["metrics"]["resampled_shape"] == [182, 218, 182]


def test_version_from_model_name():
    from multimodalgen.models.registry import version_from_name

    assert version_from_name("encoder-v2") == 2 and version_from_name("personalized-v12") == 12
    assert version_from_name("enc-test") is None and version_from_name("x-vbeta") is None
