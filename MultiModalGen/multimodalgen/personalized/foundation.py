"""Adapter to the foundation encoder's weights (owned by `multimodalgen.encoder`): find and load them into the
shared encoder f_theta of a personalized model.

Accepted sources: an encoder model artifact folder (`Resources/Models/<name>`, sha256 verified), a pretraining
checkpoint (`last.pt` / `step_*.pt` with a "model" state dict), or a bare state-dict file.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from multimodalgen.errors import UserInputError


def default_foundation_path() -> Path | None:
    """The shipped foundation encoder's folder (`models.registry.FOUNDATION_ENCODER`), else None.

    Not the default encoder: `personalized-v2` was trained from this one, so its training command replays exactly;
    set the training config's `init_encoder` to another encoder folder to try it."""
    from multimodalgen.models.registry import FOUNDATION_ENCODER, shipped_models_dir

    folder = shipped_models_dir() / FOUNDATION_ENCODER
    return folder if (folder / "config.json").is_file() else None


def read_foundation_state(path: str | Path) -> dict[str, torch.Tensor]:
    """UNet3D state dict (float32) from a folder / checkpoint / state-dict file (see module docstring)."""
    path = Path(path)
    if path.is_dir():
        from multimodalgen.models.artifact import read_artifact

        return {k: v.float() if v.is_floating_point() else v for k, v in read_artifact(path, "encoder")[1].items()}
    if not path.is_file():
        raise UserInputError("encoder weights not found", got=str(path), fix="check the path")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
            state = state["model"]
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}


def load_into(encoder: nn.Module, state: dict[str, torch.Tensor], tile_stem_to: int | None = None) -> list[str]:
    """Copy matching tensors of `state` into `encoder` (a UNet3D); returns the keys that did not fit.

    With `tile_stem_to` = C, a 1-channel stem weight is repeated over C input channels and divided by C (for the
    early-fusion concat baseline).
    """
    own = encoder.state_dict()
    skipped = []
    with torch.no_grad():
        for key, value in state.items():
            if key not in own:
                skipped.append(key)
                continue
            if own[key].shape != value.shape and tile_stem_to and value.dim() == 5 and value.shape[1] == 1:
                value = value.repeat(1, tile_stem_to, 1, 1, 1) / tile_stem_to
            if own[key].shape != value.shape:
                skipped.append(key)
                continue
            own[key].copy_(value)
    return skipped
