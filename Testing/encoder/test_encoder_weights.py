"""Weights: export -> sha256 -> load round trip; the shipped encoder loads and matches its recorded sha256."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from multimodalgen.encoder.train import PretrainConfig, pretrain
from multimodalgen.encoder.weights import encoder_dir, export_weights, load_encoder, sha256_file


def test_export_and_load_roundtrip(tmp_path):
    cfg = PretrainConfig.from_dict({"engine": {"shape": [16, 16, 16]}, "network": {"widths": [4, 8, 8, 16, 16]},
                                 "steps": 1, "n_voxels": 16, "proj_dim": 8, "warmup_steps": 1})
    pretrain(cfg, tmp_path / "run", torch.device("cpu"))
    info = export_weights(tmp_path / "run" / "last.pt", tmp_path / "enc", name="enc-test",
                          metrics={"columns": ["a"], "rows": [{"method": "x", "a": 0.5}]})
    folder = tmp_path / "enc"
    assert info["sha256"] == sha256_file(folder / "model.safetensors") and info["format"] == "safetensors"
    assert json.loads((folder / "config.json").read_text())["step"] == 1
    card = (folder / "MODEL_CARD.md").read_text()
    assert info["sha256"] in card and "| x | 0.500 |" in card
    from safetensors.torch import load_file

    state = load_file(str(folder / "model.safetensors"))
    assert all(v.dtype == torch.float16 for v in state.values() if v.is_floating_point())
    model = load_encoder(str(folder))
    assert not model.training
    x = torch.rand(1, 1, 16, 16, 16)
    with torch.no_grad():
        assert model(x).shape == (1, 16, 16, 16, 16)
    # a modified weights file is refused
    with open(folder / "model.safetensors", "ab") as f:
        f.write(b"0")
    from multimodalgen.errors import UserInputError

    with pytest.raises(UserInputError, match="sha256"):
        load_encoder(str(folder))


def test_shipped_encoder_matches_sha256_and_runs():
    folder = encoder_dir()
    config = json.loads((folder / "config.json").read_text())
    assert sha256_file(folder / config["weights"]) == config["sha256"] and config["format"] == "safetensors"
    assert (folder / "model.safetensors").stat().st_size <= 25 * 2**20
    assert config["sha256"] in (folder / "MODEL_CARD.md").read_text()
    model = load_encoder()
    from multimodalgen.encoder.inference import extract_features

    feats = extract_features(np.random.default_rng(0).random((20, 16, 12), dtype=np.float32), model, patch=32)
    assert feats.shape == (16, 20, 16, 12) and np.isfinite(feats).all()


def test_cli_features_and_pretrain(tmp_path):
    from multimodalgen.cli.main import main
    from multimodalgen.io import read_volume, write_volume
    from multimodalgen.volume import Volume

    cfg = {"engine": {"shape": [16, 16, 16]}, "network": {"widths": [4, 8, 8, 16, 16]}, "steps": 2,
           "n_voxels": 16, "proj_dim": 8, "warmup_steps": 1}
    (tmp_path / "c.json").write_text(json.dumps(cfg))
    assert main(["--device", "cpu", "--progress", "none", "pretrain", "--config", str(tmp_path / "c.json"),
                 "--out", str(tmp_path / "run"), "--max-steps", "1"]) == 0
    assert main(["--device", "cpu", "--progress", "none", "pretrain", "--config", str(tmp_path / "c.json"),
                 "--out", str(tmp_path / "run")]) == 2          # exists without --resume: user error
    assert main(["--device", "cpu", "--progress", "none", "pretrain", "--config", str(tmp_path / "c.json"),
                 "--out", str(tmp_path / "run"), "--resume"]) == 0
    export_weights(tmp_path / "run" / "last.pt", tmp_path / "enc", name="enc-test")
    affine = np.diag([2.0, 2.0, 3.0, 1.0])
    write_volume(Volume(np.random.default_rng(0).random((18, 14, 9)).astype(np.float32) * 300, affine, "T1"),
                 tmp_path / "img.nii.gz")
    assert main(["--device", "cpu", "--progress", "none", "features", "--image", str(tmp_path / "img.nii.gz"),
                 "--out", str(tmp_path / "f.nii.gz"), "--encoder", str(tmp_path / "enc"), "--patch", "16"]) == 0
    feats = read_volume(tmp_path / "f.nii.gz")
    assert feats.array.shape == (16, 18, 14, 9)
    assert np.allclose(feats.affine, affine, atol=1e-4)


def _tiny_run(tmp_path, name, init_from="", steps=1, seed=0):
    cfg = PretrainConfig.from_dict({"engine": {"shape": [16, 16, 16]}, "network": {"widths": [4, 8, 8, 16, 16]},
                                 "steps": steps, "n_voxels": 16, "proj_dim": 8, "warmup_steps": 1,
                                 "init_from": init_from, "seed": seed})
    pretrain(cfg, tmp_path / name, torch.device("cpu"))
    return tmp_path / name / "last.pt"


def test_staged_export_records_every_stage_and_replayable_configs(tmp_path):
    first = _tiny_run(tmp_path, "a", steps=2)
    second = _tiny_run(tmp_path, "b", init_from=str(first), steps=1, seed=1)
    stages = [{"checkpoint": str(first), "device": "cpu", "note": "from scratch"},
              {"checkpoint": str(second), "device": "gpu"}]
    info = export_weights(second, tmp_path / "enc", name="enc-v3", stages=stages)
    folder = tmp_path / "enc"
    assert info["step"] == 3 and info["steps_planned"] == 3 and info["version"] == "3.0"
    assert [r["steps_reached"] for r in info["training_stages"]] == [2, 1]
    assert info["device_trained"] == "stage 1: cpu; stage 2: gpu"
    stage1 = PretrainConfig.from_json(folder / "pretrain_stage1.json")
    stage2 = PretrainConfig.from_json(folder / "pretrain_stage2.json")
    assert stage1.init_from == "" and stage2.init_from == "stage1/last.pt" and stage2.seed == 1
    card = (folder / "MODEL_CARD.md").read_text()
    assert "pretrain_stage2.json --out stage2 --max-steps 1" in card and "| 1 | `pretrain_stage1.json` | 2 / 2 |" in card
    # a "stage" that does not continue the previous one is refused
    with pytest.raises(ValueError, match="init_from"):
        export_weights(first, tmp_path / "bad", stages=[{"checkpoint": str(second)}, {"checkpoint": str(first)}])


@pytest.mark.parametrize("name", ["encoder-v1", "encoder-v2", "encoder-v3"])
def test_every_shipped_encoder_matches_its_sha256(name):
    folder = encoder_dir(name)
    config = json.loads((folder / "config.json").read_text())
    assert config["name"] == name
    assert sha256_file(folder / config["weights"]) == config["sha256"]
    for stage in config.get("training_stages", []):
        PretrainConfig.from_json(folder / stage["config_file"])   # every recorded stage config is loadable


def test_pickled_weights_convert_to_the_one_artifact_format_with_the_same_outputs(tmp_path):
    """A folder in the old format (encoder.pt pickle, weights_file key) converts to model.safetensors: same tensors,
    same features, sha256 recorded and verified; the pickle is gone."""
    from multimodalgen.encoder.network import UNet3D, UNetConfig
    from multimodalgen.models.artifact import convert_pickled

    torch.manual_seed(0)
    net = UNetConfig.from_dict({"widths": [4, 8, 8, 16, 16]})
    model = UNet3D(net).eval()
    folder = tmp_path / "old"
    folder.mkdir()
    torch.save({k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()},
               folder / "encoder.pt")
    (folder / "config.json").write_text(json.dumps({"kind": "encoder", "weights_file": "encoder.pt",
                                                    "sha256": sha256_file(folder / "encoder.pt"),
                                                    "network": net.to_dict()}))
    reference = UNet3D(net).eval()
    reference.load_state_dict({k: v.float() if v.is_floating_point() else v
                               for k, v in torch.load(folder / "encoder.pt", weights_only=True).items()})
    config = convert_pickled(folder)
    assert not (folder / "encoder.pt").exists() and config["weights"] == "model.safetensors"
    x = torch.rand(1, 1, 16, 16, 16)
    with torch.no_grad():
        assert torch.equal(load_encoder(str(folder))(x), reference(x))
