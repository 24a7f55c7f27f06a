"""Put adapters into any `nn.Module` by name pattern (PEFT style), take them out, merge them, and collect their
weights.

Names are the dotted names of `model.named_modules()`; patterns are `fnmatch` patterns ("*", "?", "[...]"), e.g.
`"encoder.down.*"`, `"*.up.*"`, `"head"`. Adapted layers keep their name: `model.encoder.stem.0` becomes a
`MoRLayer` whose frozen original sits at `model.encoder.stem.0.base`, so the base model's state dict keys become
`<name>.base.weight` while adapter keys are `<name>.lora_a.weight`, `<name>.lora_b.weight`, `<name>.router.*`,
`<name>.router_logits`.
"""

from __future__ import annotations

import fnmatch

import torch
import torch.nn as nn

from multimodalgen.adapters.config import AdapterConfig
from multimodalgen.adapters.layers import SUPPORTED, MoRLayer

def _matches(name: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def find_targets(model: nn.Module, config: AdapterConfig) -> list[str]:
    """Dotted names of the Conv3d / Linear layers `config` selects (layers already wrapped are skipped)."""
    wrapped = [n for n, m in model.named_modules() if isinstance(m, MoRLayer)]
    names = []
    for name, module in model.named_modules():
        if not isinstance(module, SUPPORTED) or any(name == w or name.startswith(w + ".") for w in wrapped):
            continue
        if config.target_modules and not _matches(name, config.target_modules):
            continue
        if config.exclude_modules and _matches(name, config.exclude_modules):
            continue
        names.append(name)
    return names


def _set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


def inject_adapters(model: nn.Module, config: AdapterConfig, freeze_base: bool = True) -> list[str]:
    """Wrap every selected layer of `model` in a `MoRLayer` (in place); return the wrapped names.

    With `freeze_base`, every existing parameter of `model` is frozen first (PEFT convention); unfreeze task
    heads yourself. Raises ValueError when nothing matches.
    """
    names = find_targets(model, config)
    if not names:
        raise ValueError(f"no Conv3d/Linear layer matches target_modules={list(config.target_modules)} "
                         f"(exclude {list(config.exclude_modules)})")
    if freeze_base:
        for p in model.parameters():
            p.requires_grad_(False)
    for name in names:
        _set_submodule(model, name, MoRLayer(model.get_submodule(name), config))
    return names


def adapter_layers(model: nn.Module) -> dict[str, MoRLayer]:
    """Name -> `MoRLayer` for every adapted layer of `model`."""
    return {n: m for n, m in model.named_modules() if isinstance(m, MoRLayer)}


def strip_adapters(model: nn.Module, merge: bool = False, approximate: bool = False) -> list[str]:
    """Replace every `MoRLayer` by its base layer (in place), optionally merging the adapter in first.

    Without `merge`, the base weights come back unchanged (an adapter that was merged is unmerged first).
    """
    layers = adapter_layers(model)
    for name, layer in layers.items():
        if merge:
            layer.merge(approximate=approximate)
        else:
            layer.unmerge()
        _set_submodule(model, name, layer.base)
    return list(layers)


def merge_adapters(model: nn.Module, approximate: bool = False) -> None:
    """Fold every adapter into its base weight (see `MoRLayer.merge`)."""
    for layer in adapter_layers(model).values():
        layer.merge(approximate=approximate)


def unmerge_adapters(model: nn.Module) -> None:
    """Undo `merge_adapters` exactly (within floating-point rounding)."""
    for layer in adapter_layers(model).values():
        layer.unmerge()


def set_record_gates(model: nn.Module, on: bool = True, reset: bool | None = None) -> None:
    """Start/stop recording router-averaged gates (needed to merge a per-location router). Starting clears the
    earlier record unless `reset=False`; stopping keeps it."""
    for layer in adapter_layers(model).values():
        layer.record_gates = on
        if (on if reset is None else reset):
            layer.gate_sum.zero_()
            layer.gate_count.zero_()


def adapter_state_dict(model: nn.Module, extra_prefixes: tuple[str, ...] = ()) -> dict[str, torch.Tensor]:
    """Adapter tensors of `model` (A, B, routers), plus every tensor under `extra_prefixes` (e.g. a task head
    trained fully), as detached CPU copies keyed by state-dict name."""
    out = {}
    layers = adapter_layers(model)
    for name, layer in layers.items():
        for key, value in layer.state_dict().items():
            if not key.startswith("base."):
                out[f"{name}.{key}"] = value.detach().cpu().clone()
    for key, value in model.state_dict().items():
        if any(key == p or key.startswith(p + ".") for p in extra_prefixes):
            out[key] = value.detach().cpu().clone()
    return out


def load_adapter_state(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Copy `state` (from `adapter_state_dict`) into `model`, whose adapters must already be injected with the
    same config. Raises ValueError naming missing or unexpected keys, or shape mismatches."""
    own = model.state_dict()
    unexpected = sorted(k for k in state if k not in own)
    if unexpected:
        raise ValueError(f"adapter weights do not fit this model: unexpected keys {unexpected[:5]}")
    expected = set(adapter_state_dict(model))
    missing = sorted(expected - set(state))
    if missing:
        raise ValueError(f"adapter weights do not fit this model: missing keys {missing[:5]}")
    for key, value in state.items():
        if tuple(own[key].shape) != tuple(value.shape):
            raise ValueError(f"adapter tensor {key} has shape {tuple(value.shape)}, model expects "
                             f"{tuple(own[key].shape)}")
    with torch.no_grad():
        for key, value in state.items():
            own[key].copy_(value.to(own[key].dtype))


def adapter_parameters(model: nn.Module) -> list[nn.Parameter]:
    """All trainable adapter parameters of `model`."""
    return [p for layer in adapter_layers(model).values() for p in layer.adapter_parameters()]


def count_adapter_parameters(model: nn.Module) -> int:
    """Number of adapter parameters (A, B, routers)."""
    return sum(p.numel() for p in adapter_parameters(model))
