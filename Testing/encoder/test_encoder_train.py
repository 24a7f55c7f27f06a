"""Pretraining loop: the loss decreases on a tiny run, a resumed run reaches exactly the same state."""

from __future__ import annotations

import json

import pytest
import torch

from multimodalgen.encoder.train import PretrainConfig, learning_rate, load_checkpoint, pretrain
from multimodalgen.synthesis.config import EngineConfig

NET = {"widths": [4, 8, 8, 16, 16]}


def _cfg(**kw) -> PretrainConfig:
    base = {"engine": {"shape": [16, 16, 16], "n_views": 2}, "network": NET, "steps": 6, "n_voxels": 32,
            "proj_dim": 16, "warmup_steps": 1, "checkpoint_every": 2, "snapshot_every": 4, "log_every": 1,
            "lr": 3e-3}
    base.update(kw)
    return PretrainConfig.from_dict(base)


def test_config_json_roundtrip(tmp_path):
    cfg = _cfg()
    path = tmp_path / "c.json"
    path.write_text(json.dumps(cfg.to_dict()))
    assert PretrainConfig.from_json(path) == cfg
    with pytest.raises(ValueError):
        PretrainConfig.from_dict({"nonsense": 1})
    with pytest.raises(ValueError):
        PretrainConfig(engine=EngineConfig(shape=(24, 24, 24)))  # not a multiple of 16


def test_lr_schedule():
    cfg = _cfg(steps=100, warmup_steps=10)
    assert learning_rate(cfg, 0) < learning_rate(cfg, 9) <= cfg.lr
    assert learning_rate(cfg, 99) < 0.2 * cfg.lr


def test_loss_decreases_on_fixed_tiny_problem(tmp_path):
    """Repeatedly training on the same sample (seeded) must lower the loss."""
    from multimodalgen.encoder.loss import make_heads, multilevel_contrastive_loss
    from multimodalgen.encoder.network import UNet3D, UNetConfig
    from multimodalgen.synthesis.views import generate_batch

    torch.manual_seed(0)
    cfg = EngineConfig(shape=(16, 16, 16), n_views=2, p_view_deform=0.0)
    images, labels = generate_batch(cfg, [3])
    model = UNet3D(UNetConfig.from_dict(NET))
    heads = make_heads(model.level_channels(), 16)
    opt = torch.optim.Adam(list(model.parameters()) + list(heads.parameters()), lr=3e-3)
    losses = []
    for _ in range(30):
        _, levels = model(images.reshape(2, 1, 16, 16, 16), return_levels=True)
        gen = torch.Generator().manual_seed(0)  # same voxels every step: a fixed objective
        loss, _ = multilevel_contrastive_loss(levels, labels, heads, 32, 0.33, gen)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert sum(losses[-5:]) / 5 < 0.9 * sum(losses[:5]) / 5, losses


def test_pretrain_logs_and_checkpoints(tmp_path):
    out = tmp_path / "run"
    result = pretrain(_cfg(steps=4), out, torch.device("cpu"))
    assert result["step"] == 4
    lines = [json.loads(s) for s in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [1, 2, 3, 4]
    assert all(r["loss"] > 0 and r["samples_per_sec"] > 0 for r in lines)
    assert (out / "last.pt").exists() and (out / "step_0000004.pt").exists()
    state = load_checkpoint(out / "last.pt", torch.device("cpu"))  # weights_only=True
    assert state["step"] == 4 and "optimizer" in state
    with pytest.raises(FileExistsError):
        pretrain(_cfg(steps=4), out, torch.device("cpu"))


def test_resume_gives_the_same_state(tmp_path):
    torch.set_num_threads(1)
    cfg = _cfg(steps=4)
    straight = tmp_path / "straight"
    pretrain(cfg, straight, torch.device("cpu"))
    split = tmp_path / "split"
    pretrain(cfg, split, torch.device("cpu"), max_steps=2)
    assert load_checkpoint(split / "last.pt", torch.device("cpu"))["step"] == 2
    pretrain(cfg, split, torch.device("cpu"), resume=True)
    a = load_checkpoint(straight / "last.pt", torch.device("cpu"))
    b = load_checkpoint(split / "last.pt", torch.device("cpu"))
    assert a["step"] == b["step"] == 4
    for key in a["model"]:
        assert torch.allclose(a["model"][key].float(), b["model"][key].float(), atol=1e-6), key
    with pytest.raises(ValueError, match="different config"):
        pretrain(_cfg(steps=4, lr=1e-2), split, torch.device("cpu"), resume=True)


def test_role_loss_balanced_and_ignores_unlabelled():
    from multimodalgen.encoder.train import role_loss

    classifier = torch.nn.Conv3d(4, 3, 1)
    feats = torch.randn(2, 4, 4, 4, 4)
    assert role_loss(classifier, feats, torch.full((2, 4, 4, 4), -1)) is None
    roles = torch.full((2, 4, 4, 4), -1)
    roles[0, :2], roles[0, 2:], roles[1, :1] = 0, 1, 2
    loss = role_loss(classifier, feats, roles)
    assert loss is not None and torch.isfinite(loss) and loss > 0
    loss.backward()
    assert classifier.weight.grad is not None and classifier.weight.grad.abs().sum() > 0


def test_role_weight_and_init_from(tmp_path):
    """A run with the role term trains and logs it; a second run initialised from its checkpoint starts from
    those network weights."""
    layered = {"shape": [16, 16, 16], "n_views": 2,
               "labels": {"p_layered": 1.0, "p_foreground_mask": 1.0, "mask_radius": [0.8, 0.9]}}
    first = pretrain(_cfg(engine=layered, role_weight=1.0, steps=2), tmp_path / "a", torch.device("cpu"))
    assert first["step"] == 2
    logged = [json.loads(line) for line in (tmp_path / "a" / "train_log.jsonl").read_text().splitlines()]
    assert any(r["role"] is not None and r["role"] > 0 for r in logged)
    state = load_checkpoint(tmp_path / "a" / "last.pt", torch.device("cpu"))
    n_levels = len(state["config"]["network"]["widths"]) - 1
    assert any(k.startswith(f"{n_levels}.") for k in state["heads"])  # the role classifier is saved with the heads
    from multimodalgen.encoder.train import build, initial_weights

    init = initial_weights(tmp_path / "a" / "last.pt", torch.device("cpu"))
    cfg = _cfg(init_from=str(tmp_path / "a" / "last.pt"), steps=1)
    model, _, _ = build(cfg, torch.device("cpu"))
    model.load_state_dict(init)
    assert all(torch.equal(v, state["model"][k].float()) for k, v in model.state_dict().items())
    with pytest.raises(FileNotFoundError):
        initial_weights(tmp_path / "missing.pt", torch.device("cpu"))


def test_resume_accepts_a_checkpoint_written_before_newer_config_fields(tmp_path):
    """Checkpoints from before `amp` existed resume with the same config (defaults fill the missing field)."""
    cfg = PretrainConfig.from_dict({"engine": {"shape": [16, 16, 16]}, "network": {"widths": [4, 8, 8, 16, 16]},
                                 "steps": 3, "n_voxels": 16, "proj_dim": 8, "warmup_steps": 1, "amp": True})
    out = tmp_path / "run"
    pretrain(cfg, out, torch.device("cpu"), max_steps=1)          # amp is ignored on CPU
    state = torch.load(out / "last.pt", weights_only=True)
    del state["config"]["amp"]
    torch.save(state, out / "last.pt")
    old_style = PretrainConfig.from_dict({k: v for k, v in cfg.to_dict().items() if k != "amp"})
    assert pretrain(old_style, out, torch.device("cpu"), resume=True)["step"] == 3


def test_feature_distillation_loss_scale_and_shape_check():
    from multimodalgen.encoder.loss import feature_distillation_loss

    gen = torch.Generator().manual_seed(0)
    teacher = torch.randn(2, 16, 6, 6, 6, generator=gen) * 3.0 + 1.0
    assert float(feature_distillation_loss(teacher.clone(), teacher)) == pytest.approx(0.0, abs=1e-7)
    unrelated = torch.randn(2, 16, 6, 6, 6, generator=gen) * 3.0 + 1.0
    assert float(feature_distillation_loss(unrelated, teacher)) == pytest.approx(2.0, abs=0.2)   # scale-free
    with pytest.raises(ValueError, match="same output channels"):
        feature_distillation_loss(teacher[:, :8], teacher)


def test_distillation_keeps_the_teacher_and_logs_its_term(tmp_path):
    """distill_weight needs distill_from; a distilled run logs the term, the teacher file is only read, and a
    student initialised from its own teacher starts at distillation 0 (the teacher runs in eval mode, the student
    in train mode, so the first value is small rather than exactly 0)."""
    with pytest.raises(ValueError, match="distill_from"):
        _cfg(distill_weight=1.0)
    pretrain(_cfg(steps=2), tmp_path / "teacher", torch.device("cpu"))
    teacher_file = tmp_path / "teacher" / "last.pt"
    before = teacher_file.read_bytes()
    cfg = _cfg(steps=3, init_from=str(teacher_file), distill_from=str(teacher_file), distill_weight=5.0)
    pretrain(cfg, tmp_path / "student", torch.device("cpu"))
    logged = [json.loads(line) for line in (tmp_path / "student" / "train_log.jsonl").read_text().splitlines()]
    assert all(r["distill"] is not None and r["distill"] >= 0 for r in logged)
    assert teacher_file.read_bytes() == before
    with pytest.raises(FileNotFoundError):
        pretrain(_cfg(steps=1, distill_from=str(tmp_path / "missing.pt"), distill_weight=1.0), tmp_path / "bad",
                 torch.device("cpu"))
    assert not (tmp_path / "bad" / "last.pt").exists()


def test_grown_network_keeps_frozen_outputs(tmp_path):
    """A network grown from a trained one (wider last full-resolution conv) computes the same outputs at first;
    with frozen_channels = n, training changes only outputs n.. (role channels), never [0, n)."""
    from multimodalgen.encoder.network import UNet3D, UNetConfig
    from multimodalgen.encoder.train import grow_state, initial_weights

    pretrain(_cfg(steps=1), tmp_path / "base", torch.device("cpu"))
    base_state = initial_weights(tmp_path / "base" / "last.pt", torch.device("cpu"))
    base = UNet3D(UNetConfig.from_dict(NET))
    base.load_state_dict(base_state)
    grown = UNet3D(UNetConfig.from_dict({**NET, "head_width": 12, "half_width": 12}))
    grown.load_state_dict(grow_state(grown, base_state))
    x = torch.rand(1, 1, 16, 16, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        at_init = grown.eval()(x)
        assert torch.allclose(base.eval()(x), at_init, atol=1e-5)          # zero columns: float rounding only
    with pytest.raises(ValueError, match="does not fit"):
        base.load_state_dict(grow_state(base, grown.state_dict()))

    layered = {"shape": [16, 16, 16], "n_views": 2,
               "labels": {"p_layered": 1.0, "p_foreground_mask": 1.0, "mask_radius": [0.8, 0.9]}}
    with pytest.raises(ValueError, match="head_width"):
        _cfg(engine=layered, frozen_channels=12, init_from=str(tmp_path / "base" / "last.pt"))
    cfg = _cfg(engine=layered, network={**NET, "head_width": 12, "half_width": 12}, steps=3, role_weight=1.0, role_channels=4,
               frozen_channels=12, init_from=str(tmp_path / "base" / "last.pt"))
    pretrain(cfg, tmp_path / "grown", torch.device("cpu"))
    trained = UNet3D(cfg.network)
    trained.load_state_dict(load_checkpoint(tmp_path / "grown" / "last.pt", torch.device("cpu"))["model"])
    with torch.no_grad():
        after = trained.eval()(x)
    assert torch.equal(at_init[:, :12], after[:, :12])                   # bit for bit vs the grown network
    assert not torch.allclose(at_init[:, 12:], after[:, 12:])
