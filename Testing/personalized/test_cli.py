"""`multimodalgen finetune` / `segment` and the Python API on tiny generated cases: any subset of modalities,
resumable fine-tuning writes a small adapter, and bad input is refused with exit code 2."""

from __future__ import annotations

import json

import numpy as np
import pytest

from multimodalgen.cli.main import main

from pers_helpers import write_case


@pytest.fixture
def cases_csv(tmp_path):
    rows = ["case,T1,T2,PD,label"]
    for i in range(3):
        c = write_case(tmp_path, f"c{i}", seed=i)
        rows.append(f"c{i},{c['T1'].name},{c['T2'].name},{'' if i == 2 else c['PD'].name},{c['label'].name}")
    path = tmp_path / "cases.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


def _finetune(cases_csv, model_dir, out, *extra):
    return main(["--progress", "none", "--device", "cpu", "finetune", "--cases", str(cases_csv), "--out", str(out),
                 "--base-model", str(model_dir), "--steps", "4", "--crop", "16", *extra])


def test_finetune_then_segment_any_subset(tmp_path, cases_csv, tiny_model_dir, capsys):
    out = tmp_path / "adapter"
    assert _finetune(cases_csv, tiny_model_dir, out, "--val-fraction", "0.34") == 0
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["base_model"]["name"] == "tiny-personalized" and config["labels"]["3"] == "WM"
    assert config["training"]["n_val"] == 1 and not (out / "checkpoint.pt").exists()
    assert (out / "adapter.safetensors").stat().st_size < 1_000_000
    case = write_case(tmp_path, "new", seed=9)
    for subset in (["T1"], ["T2", "PD"], ["T1", "T2", "PD"]):
        labels = tmp_path / f"seg_{'_'.join(subset)}.nii.gz"
        argv = ["--progress", "none", "segment", "--adapter", str(out), "--base-model", str(tiny_model_dir),
                "--out", str(labels), "--probabilities"]
        for m in subset:
            argv += ["--image", f"{m}={case[m]}"]
        assert main(argv) == 0
        from multimodalgen.io import read_label, read_volume

        lab = read_label(labels)
        assert lab.shape3d == (12, 12, 8) and int(lab.array.max()) <= 3
        probs = read_volume(labels.with_name(labels.name.replace(".nii.gz", ".probabilities.nii.gz")))
        assert probs.array.shape[0] == 4 and np.allclose(probs.array.sum(0), 1.0, atol=1e-4)


def test_finetune_resumes_from_checkpoint(tmp_path, cases_csv, tiny_model_dir):
    import torch

    from multimodalgen.personalized.cases import load_case, read_cases
    from multimodalgen.personalized.finetune import FinetuneConfig, finetune_cases
    from multimodalgen.personalized.weights import load_model

    base, _ = load_model(tiny_model_dir)
    cases = [load_case(c, base.config.modalities) for c in read_cases(cases_csv, base.config.modalities)]
    cfg = FinetuneConfig(steps=3, crop=16, val_fraction=0.0, checkpoint_every=1)
    ckpt = tmp_path / "ck.pt"
    finetune_cases(base, cases, base.config.labels, FinetuneConfig(steps=2, crop=16, val_fraction=0.0,
                                                                   checkpoint_every=1), checkpoint=ckpt)
    assert torch.load(ckpt, weights_only=True)["step"] == 2
    _, record = finetune_cases(base, cases, base.config.labels, cfg, checkpoint=ckpt)
    assert record["steps_done"] == 3 and torch.load(ckpt, weights_only=True)["step"] == 3


def test_python_api(tmp_path, tiny_model_dir):
    from multimodalgen.io import read_volume
    from multimodalgen.personalized import segment_volumes

    case = write_case(tmp_path, "api", seed=3)
    images = {m: read_volume(case[m], m) for m in ("T2", "PD")}
    labels = segment_volumes(images, None, "cpu", base_model=tiny_model_dir, ttp_steps=2)
    assert labels.shape3d == (12, 12, 8) and labels.metadata["modalities"] == ["T2", "PD"]
    assert labels.metadata["ttp_seconds"] > 0


def _segment(tmp_path, model_dir, images, *extra):
    argv = ["--progress", "none", "segment", "--base-model", str(model_dir), "--out", str(tmp_path / "o.nii.gz")]
    for name, path in images.items():
        argv += ["--image", f"{name}={path}"]
    return main(argv + list(extra))


def test_bad_input_refused(tmp_path, cases_csv, tiny_model_dir, capsys):
    case = write_case(tmp_path, "bad", seed=4)
    assert _segment(tmp_path, tiny_model_dir, {"XRAY": case["T1"]}) == 2
    assert "unknown modality XRAY" in capsys.readouterr().err
    other = write_case(tmp_path, "grid", seed=5, shape=(10, 12, 8), modalities=("T2",))
    assert _segment(tmp_path, tiny_model_dir, {"T1": case["T1"], "T2": other["T2"]}) == 2
    assert "--resample" in capsys.readouterr().err
    assert _segment(tmp_path, tiny_model_dir, {"T1": case["T1"], "T2": other["T2"]}, "--resample") == 0
    # an unreadable reference label is refused before anything is segmented or written
    (tmp_path / "o.nii.gz").unlink()
    (tmp_path / "notes.txt").write_text("not an image")
    assert _segment(tmp_path, tiny_model_dir, {"T1": case["T1"]}, "--reference-label", str(tmp_path / "notes.txt")) == 2
    assert "cannot read" in capsys.readouterr().err and not (tmp_path / "o.nii.gz").exists()
    # CSV with a missing path, empty label file, label outside the set
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text(f"T1,label\nmissing.nii.gz,{case['label'].name}\n")
    assert _finetune(bad_csv, tiny_model_dir, tmp_path / "a1") == 2
    assert "line 2, column T1: file not found" in capsys.readouterr().err
    from multimodalgen.io import write_label
    from multimodalgen.volume import Volume

    write_label(Volume(np.zeros((12, 12, 8), np.uint8), np.diag([2.0, 2, 2, 1]), "LABEL"), tmp_path / "empty.nii.gz")
    bad_csv.write_text(f"T1,label\n{case['T1'].name},empty.nii.gz\n")
    assert _finetune(bad_csv, tiny_model_dir, tmp_path / "a2") == 2
    assert "is empty" in capsys.readouterr().err
    bad_csv.write_text(f"T1,FLAIRX,label\n{case['T1'].name},,{case['label'].name}\n")
    assert _finetune(bad_csv, tiny_model_dir, tmp_path / "a3") == 2
    assert "unknown modality FLAIRX" in capsys.readouterr().err


def test_mismatched_adapter_refused(tmp_path, cases_csv, tiny_model_dir, capsys):
    import torch

    from multimodalgen.personalized.model import PersonalizedNet
    from multimodalgen.personalized.weights import save_model

    from pers_helpers import tiny_config

    out = tmp_path / "adapter"
    assert _finetune(cases_csv, tiny_model_dir, out, "--val-fraction", "0", "--steps", "1") == 0
    torch.manual_seed(1)
    save_model(tmp_path / "other", PersonalizedNet(tiny_config()), name="tiny-personalized", version="2")
    case = write_case(tmp_path, "mm", seed=6)
    assert _segment(tmp_path, tmp_path / "other", {"T1": case["T1"]}, "--adapter", str(out)) == 2
    err = capsys.readouterr().err
    assert "tiny-personalized v2" in err and "tiny-personalized v1" in err
