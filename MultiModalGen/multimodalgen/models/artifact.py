"""One model-artifact format for every model the project writes: a folder with `config.json` + safetensors weights.

config.json (one schema; kind-specific keys such as `network` or `model` sit beside these):
    kind        "encoder" | "personalized" | ... (what loads it)
    format      "safetensors" (the only weight format; never pickles)
    weights     the weights file name inside the folder (model.safetensors)
    sha256      sha256 of the weights file, verified on every load
    labels      [LabelDefinition JSON] (`multimodalgen.terminology.labels_to_json`) for models with output classes
    provenance  {training command, data engine version, steps, device, ...}

Writes are atomic through `multimodalgen.io.atomic_path`. Loading never trusts a file that does not match its
recorded sha256 (a one-line `UserInputError` names the folder and the fix).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from multimodalgen.errors import UserInputError
from multimodalgen.io.checksum import sha256_file

FORMAT = "safetensors"
WEIGHTS = "model.safetensors"
REQUIRED = ("kind", "format", "weights", "sha256")


def write_artifact(folder: str | Path, config: dict[str, Any], tensors: dict, *, labels=None,
                   provenance: dict[str, Any] | None = None, config_name: str = "config.json",
                   weights_name: str = WEIGHTS, metadata: dict[str, str] | None = None) -> dict[str, Any]:
    """Write `tensors` (name -> torch tensor, saved as given) and config.json into `folder`; returns the config.

    `config` must hold `kind`; `format`, `weights` and `sha256` are set here; `labels` (LabelDefinitions) and
    `provenance` are added when given. Adapters keep their historical file names (`config_name`, `weights_name`).
    """
    from safetensors.torch import save_file

    from multimodalgen.io.writers import atomic_path, write_json
    from multimodalgen.terminology import labels_to_json

    if not config.get("kind"):
        raise ValueError("a model artifact needs a kind")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / weights_name) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp), metadata=metadata)
    out = dict(config, format=FORMAT, weights=weights_name, sha256=sha256_file(folder / weights_name))
    if labels is not None:
        out["labels"] = labels_to_json(list(labels))
    if provenance is not None:
        out["provenance"] = dict(provenance)
    write_json(out, folder / config_name)
    return out


def read_config(folder: str | Path, kind: str, config_name: str = "config.json") -> dict[str, Any]:
    """The config (config.json) of artifact `folder`, checked to be of `kind` and in the one format."""
    folder = Path(folder)
    try:
        config = json.loads((folder / config_name).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UserInputError(f"cannot read the model config {folder / config_name}", got=str(exc)[:80],
                             fix="reinstall the extension or re-export the model") from None
    missing = [k for k in REQUIRED if k not in config]
    if config.get("kind") != kind or missing or config.get("format") != FORMAT:
        raise UserInputError(f"{folder} is not a {kind} model artifact",
                             expected=f'kind "{kind}", format "{FORMAT}", keys {", ".join(REQUIRED)}',
                             got=f"kind {config.get('kind')!r}, format {config.get('format')!r}, missing {missing}",
                             fix="pass a model folder written by this version (or convert it with "
                                 "`python -m multimodalgen.models.artifact convert FOLDER`)")
    return config


def read_artifact(folder: str | Path, kind: str, config_name: str = "config.json") -> tuple[dict[str, Any], dict]:
    """(config, tensors) of artifact `folder`; the weights' sha256 is verified before they are read."""
    from safetensors.torch import load_file

    folder = Path(folder)
    config = read_config(folder, kind, config_name)
    weights = folder / config["weights"]
    if Path(config["weights"]).name != config["weights"] or not weights.is_file():
        raise UserInputError(f"model weights missing in {folder}", expected=config["weights"],
                             fix="reinstall the extension or re-export the model")
    digest = sha256_file(weights)
    if digest != config["sha256"]:
        raise UserInputError(f"{kind} weights in {folder} do not match their sha256 (corrupt or replaced file)",
                             expected=str(config["sha256"]), got=digest, fix="reinstall or re-export the model")
    try:
        return config, load_file(str(weights))
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own kinds for a damaged file
        raise UserInputError(f"{kind} weights {weights} cannot be read ({type(exc).__name__})",
                             fix="reinstall or re-export the model") from None


def convert_pickled(folder: str | Path, old_name: str = "encoder.pt") -> dict[str, Any]:
    """Convert a folder whose weights are a torch pickle (`encoder.pt`, `weights_file` key) to this format: the
    same tensors in model.safetensors, config keys `format`/`weights`/`sha256`; the pickle is removed."""
    import torch

    folder = Path(folder)
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    old = folder / config.pop("weights_file", old_name)
    if config.get("sha256") and sha256_file(old) != config["sha256"]:
        raise UserInputError(f"{old} does not match its sha256; not converting", fix="restore the original file")
    state = torch.load(old, map_location="cpu", weights_only=True)
    written = write_artifact(folder, config, state)
    old.unlink()
    return written


if __name__ == "__main__":  # python -m multimodalgen.models.artifact convert FOLDER ...
    import sys

    if len(sys.argv) < 3 or sys.argv[1] != "convert":
        sys.exit("usage: python -m multimodalgen.models.artifact convert FOLDER [FOLDER ...]")
    for name in sys.argv[2:]:
        print(name, convert_pickled(name)["sha256"])
