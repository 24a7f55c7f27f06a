"""File-level parts of the panel actions outside Slicer: adapters folder management, CASES.csv assembly for
fine-tuning, the `serve` verb on the real command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from MultiModalGenLib import actions
from multimodalgen.errors import UserInputError
from multimodalgen.personalized.driver import write_cases_csv

ROOT = Path(__file__).resolve().parents[2]


def make_adapter(folder: Path, name: str) -> Path:
    path = folder / name
    path.mkdir(parents=True)
    (path / "adapter.json").write_text(json.dumps({"name": name, "modalities": ["T1", "T2"]}))
    (path / "adapter.safetensors").write_bytes(b"\0" * 16)
    return path


def test_adapter_list_export_import_delete(tmp_path):
    store = tmp_path / "adapters"
    make_adapter(store, "site-a")
    listed = actions.listAdapters(store)
    assert [a["name"] for a in listed] == ["site-a"] and listed[0]["modalities"] == ["T1", "T2"]
    archive = actions.exportAdapter("site-a", store, str(tmp_path / "share" / "site-a.zip"))
    assert Path(archive).is_file()
    with pytest.raises(UserInputError, match="already exists"):
        actions.importAdapter(archive, store)
    actions.deleteAdapter("site-a", store)
    assert actions.listAdapters(store) == []
    assert actions.importAdapter(archive, store) == "site-a"
    assert (store / "site-a" / "adapter.safetensors").read_bytes() == b"\0" * 16
    with pytest.raises(UserInputError, match="no adapter named"):
        actions.deleteAdapter("../adapters", store)
    outputs = {"adapter_name": "site-b", "adapter_zip": {"file": actions.exportAdapter("site-a", store,
                                                                                        str(tmp_path / "dl.zip"))}}
    assert actions.importFinetuneResult(outputs, store) == "site-b" and (store / "site-b").is_dir()


def test_cases_csv_merges_user_csv_and_scene_cases(tmp_path):
    site = tmp_path / "site"
    (site / "img").mkdir(parents=True)
    (site / "CASES.csv").write_text("T1,FLAIR,label\nimg/a_t1.nii.gz,,img/a_lab.nii.gz\n")
    count = write_cases_csv([{"images": {"T2": "/x/t2.nii.gz"}, "label": "/x/lab.nii.gz"}],
                            str(site / "CASES.csv"), tmp_path / "cases.csv")
    lines = (tmp_path / "cases.csv").read_text().splitlines()
    assert count == 2 and lines[0] == "FLAIR,T1,T2,label"
    assert lines[1] == f",{site / 'img' / 'a_t1.nii.gz'},,{site / 'img' / 'a_lab.nii.gz'}"
    assert lines[2] == ",,/x/t2.nii.gz,/x/lab.nii.gz"
    with pytest.raises(UserInputError, match="no training cases"):
        write_cases_csv([], None, tmp_path / "none.csv")


def test_serve_verb_is_registered_and_requires_a_token():
    env = dict(os.environ, PYTHONPATH=str(ROOT / "MultiModalGen"))
    env.pop("MULTIMODALGEN_TOKEN", None)
    helptext = subprocess.run([sys.executable, "-m", "multimodalgen.cli.main", "serve", "--help"], env=env,
                              capture_output=True, text=True, timeout=60)
    assert helptext.returncode == 0 and "--token" in helptext.stdout and "127.0.0.1" in helptext.stdout
    refused = subprocess.run([sys.executable, "-m", "multimodalgen.cli.main", "serve", "--port", "1"], env=env,
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "access token" in refused.stderr and "Traceback" not in refused.stderr


def test_dependency_check_is_pure_and_reports_torch_first():
    from MultiModalGenLib import dependencies

    installed = {"numpy": "2.1.0", "scipy": "1.9.0", "nibabel": "5.2.1", "SimpleITK": "2.4.0",
                 "safetensors": "0.4.5", "pynrrd": "1.0.0"}
    missing = dependencies.missingRequirements(versionOf=installed.get)
    assert missing == ["torch>=2.1", "scipy>=1.10", "slicerio>=1.0"]  # scipy too old, slicerio absent
    assert dependencies.missingRequirements(includeTorch=False, versionOf=installed.get)[0] == "scipy>=1.10"
    assert "torch>=2.1 (through the PyTorch extension" in dependencies.describeMissing(missing)
    assert dependencies.requirementSatisfied("numpy>=1.24", installed.get)
    with pytest.raises(ValueError):
        dependencies.requirementSatisfied("numpy<2", installed.get)


def test_segment_parameters_refuse_a_missing_atlas_before_exporting_any_volume(tmp_path):
    class NeverExported:     # a volume node stand-in: exporting it would fail the test
        def __getattr__(self, name):
            raise AssertionError(f"the volume was touched ({name}) before the atlas was checked")

    with pytest.raises(UserInputError, match="tissue atlas not found"):
        actions.prepareSegment({"T1": NeverExported()}, None, tmp_path, atlas=str(tmp_path / "TPM.nii"))
    with pytest.raises(UserInputError, match="an atlas weight without an atlas"):
        actions.prepareSegment({"T1": NeverExported()}, None, tmp_path, atlasWeight=2.0)
