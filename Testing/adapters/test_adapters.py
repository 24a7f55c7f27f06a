"""MoR / LoRA adapters: exact no-op at init, gates sum <= 1, merge/unmerge, inject/strip, save/load round trip,
refusal of mismatched base model or label set, listing in the user adapter folder."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn as nn

from multimodalgen.adapters.config import AdapterConfig
from multimodalgen.adapters.inject import (adapter_state_dict, count_adapter_parameters, inject_adapters,
                                           load_adapter_state, merge_adapters, set_record_gates, strip_adapters,
                                           unmerge_adapters)
from multimodalgen.adapters.io import AdapterMeta, BaseModelRef, load_adapter, save_adapter
from multimodalgen.adapters.layers import MoRLayer
from multimodalgen.errors import UserInputError


def tiny_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv3d(2, 6, 3, padding=1, padding_mode="replicate"), nn.ReLU(),
                         nn.Conv3d(6, 5, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten(2),
                         nn.Linear(27, 7))  # (B, 5, 27) tokens -> 7 features


def randomize(model: nn.Module, seed: int = 1) -> None:
    """Give adapters non-zero B and router weights (as after training)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_b" in name or "router" in name:
                p.copy_(0.3 * torch.randn(p.shape, generator=g))


X = torch.randn(2, 2, 6, 6, 6, generator=torch.Generator().manual_seed(3))


@pytest.mark.parametrize("config", [AdapterConfig(), AdapterConfig(router="layer"), AdapterConfig.lora(4),
                                    AdapterConfig(conv_kernel="pointwise")])
def test_zero_init_is_exact_noop(config):
    model = tiny_net()
    before = model(X)
    names = inject_adapters(model, config)
    assert names == ["0", "2", "5"]
    assert torch.equal(model(X), before)
    assert all(not p.requires_grad for n, p in model.named_parameters() if ".base." in n)
    assert count_adapter_parameters(model) > 0


@pytest.mark.parametrize("router", ["location", "layer"])
def test_router_gates_sum_at_most_one(router):
    layer = MoRLayer(nn.Conv3d(2, 4, 3, padding=1), AdapterConfig(router=router))
    randomize(layer)
    g = layer.gates(X, (6, 6, 6))
    total = g.sum(dim=1)
    assert g.shape[1] == 3 and (g >= 0).all()
    assert (total <= 1.0 + 1e-6).all() and (total < 1.0).all()  # the dropped bypass slot keeps some mass
    lin = MoRLayer(nn.Linear(5, 3), AdapterConfig())
    randomize(lin)
    gl = lin.gates(torch.randn(4, 9, 5))
    assert gl.shape == (4, 9, 3) and (gl.sum(-1) < 1.0).all()


def test_bypass_falls_back_to_frozen_layer():
    layer = MoRLayer(nn.Conv3d(2, 4, 3, padding=1), AdapterConfig())
    randomize(layer)
    with torch.no_grad():
        layer.router.weight.zero_()
        layer.router.bias.copy_(torch.tensor([60.0, 0.0, 0.0, 0.0]))  # all mass on the bypass slot
    torch.testing.assert_close(layer(X), layer.base(X), atol=1e-6, rtol=0)


@pytest.mark.parametrize("config", [AdapterConfig(router="layer"), AdapterConfig.lora(4),
                                    AdapterConfig(router="layer", conv_kernel="pointwise")])
def test_merge_unmerge_exact(config):
    model = tiny_net()
    inject_adapters(model, config)
    randomize(model)
    base_weights = {n: p.detach().clone() for n, p in model.named_parameters() if ".base." in n}
    adapted = model(X)
    assert not torch.allclose(adapted, strip_free_forward(model))
    merge_adapters(model)
    torch.testing.assert_close(model(X), adapted, atol=1e-5, rtol=1e-5)
    unmerge_adapters(model)
    for n, p in model.named_parameters():
        if ".base." in n:
            torch.testing.assert_close(p, base_weights[n], atol=1e-6, rtol=0)
    torch.testing.assert_close(model(X), adapted, atol=1e-6, rtol=1e-6)


def strip_free_forward(model):
    """The frozen model's output (adapters bypassed) without modifying `model`."""
    import copy

    clone = copy.deepcopy(model)
    strip_adapters(clone)
    return clone(X)


def test_location_router_merge_is_router_averaged_and_refused_without_flag():
    model = tiny_net()
    inject_adapters(model, AdapterConfig())
    randomize(model)
    with pytest.raises(ValueError, match="approximate"):
        merge_adapters(model)
    set_record_gates(model, True)
    adapted = model(X)
    set_record_gates(model, False)
    base = {n: p.detach().clone() for n, p in model.named_parameters() if ".base." in n}
    merge_adapters(model, approximate=True)
    merged = model(X)
    # approximate, but much closer to the adapted output than the frozen model is
    frozen = strip_free_forward(model)
    assert (merged - adapted).abs().mean() < 0.5 * (frozen - adapted).abs().mean()
    unmerge_adapters(model)
    for n, p in model.named_parameters():
        if ".base." in n:
            torch.testing.assert_close(p, base[n], atol=1e-6, rtol=0)


def test_strip_with_merge_keeps_output():
    model = tiny_net()
    inject_adapters(model, AdapterConfig(router="layer"))
    randomize(model)
    adapted = model(X)
    strip_adapters(model, merge=True)
    assert not any(isinstance(m, MoRLayer) for m in model.modules())
    torch.testing.assert_close(model(X), adapted, atol=1e-5, rtol=1e-5)


def test_target_patterns_select_layers():
    model = tiny_net()
    names = inject_adapters(model, AdapterConfig(target_modules=("[02]",)))
    assert names == ["0", "2"]
    with pytest.raises(ValueError, match="no Conv3d"):
        inject_adapters(tiny_net(), AdapterConfig(target_modules=("nothing*",)))


def _meta(base_version="1", labels=None):
    return AdapterMeta(name="site-a", adapter=AdapterConfig(), base_model=BaseModelRef("personalized", base_version,
                       "ab" * 32), labels=labels or {0: "background", 1: "GM"}, modalities=["T1", "T2"])


def test_save_load_round_trip(tmp_path):
    model = tiny_net()
    inject_adapters(model, AdapterConfig())
    randomize(model)
    expected = model(X)
    state = adapter_state_dict(model, extra_prefixes=("5.base.bias",))
    assert all(".base.weight" not in k for k in state)
    save_adapter(tmp_path / "a", state, _meta())
    config = json.loads((tmp_path / "a" / "adapter_config.json").read_text())
    assert config["kind"] == "adapter" and config["base_model"]["version"] == "1"
    meta, loaded = load_adapter(tmp_path / "a", BaseModelRef("personalized", "1", "ab" * 32),
                                {0: "background", 1: "GM"})
    fresh = tiny_net()
    inject_adapters(fresh, meta.adapter)
    load_adapter_state(fresh, loaded)
    torch.testing.assert_close(fresh(X), expected, atol=1e-6, rtol=0)


def test_mismatched_base_or_labels_refused(tmp_path):
    save_adapter(tmp_path / "a", {"x.lora_a.weight": torch.zeros(2, 2)}, _meta())
    with pytest.raises(UserInputError, match=r"personalized v2.*personalized v1"):
        load_adapter(tmp_path / "a", BaseModelRef("personalized", "2", "cd" * 32))
    with pytest.raises(UserInputError, match="sha256 cdcd.*sha256 abab"):
        load_adapter(tmp_path / "a", BaseModelRef("personalized", "1", "cd" * 32))
    with pytest.raises(UserInputError, match="label set.*WM.*GM"):
        load_adapter(tmp_path / "a", labels={0: "background", 1: "WM"})
    with pytest.raises(UserInputError, match="not an adapter folder"):
        load_adapter(tmp_path)


def test_user_adapters_listed(tmp_path, monkeypatch):
    from multimodalgen.models.registry import list_models

    monkeypatch.setenv("MULTIMODALGEN_ADAPTERS", str(tmp_path))
    save_adapter(tmp_path / "site-a", {"x.lora_a.weight": torch.zeros(2, 2)}, _meta())
    entries = [e for e in list_models(models_dir=tmp_path / "none") if e.kind == "adapter"]
    assert [e.name for e in entries] == ["site-a"] and entries[0].version == "1"


def test_adapter_weights_are_checked_against_their_sha256(tmp_path):
    """Adapters are model artifacts too: format, weights and sha256 in adapter_config.json, verified on load."""
    save_adapter(tmp_path / "a", {"x.lora_a.weight": torch.zeros(2, 2)}, _meta())
    config = json.loads((tmp_path / "a" / "adapter_config.json").read_text())
    assert config["format"] == "safetensors" and config["weights"] == "adapter.safetensors"
    assert len(config["sha256"]) == 64
    with open(tmp_path / "a" / "adapter.safetensors", "ab") as handle:
        handle.write(b"0")
    with pytest.raises(UserInputError, match="sha256"):
        load_adapter(tmp_path / "a")
