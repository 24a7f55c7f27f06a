"""Personalized model folders: `config.json` (kind "personalized") + `model.safetensors` (fp16 by default).

config.json keys: name, kind, version, description, model (PersonalizedConfig), weights (file name), sha256 (of
the weights file), dtype, synth_version, training (free-form). The identity used by adapters is
`BaseModelRef(name, version, sha256)`.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from multimodalgen.adapters.io import BaseModelRef
from multimodalgen.io.checksum import sha256_file
from multimodalgen.models.registry import DEFAULT_MODELS
from multimodalgen.errors import UserInputError
from multimodalgen.personalized.config import PersonalizedConfig
from multimodalgen.personalized.model import PersonalizedNet
from multimodalgen.terminology import definitions_for, labels_to_json

DEFAULT_MODEL = DEFAULT_MODELS["personalized"]
WEIGHTS = "model.safetensors"


def save_model(folder: str | Path, model: PersonalizedNet, name: str = DEFAULT_MODEL, version: str = "1",
               description: str = "", training: dict[str, Any] | None = None,
               dtype: torch.dtype = torch.float16, synth_version: str | None = None) -> BaseModelRef:
    """Write `model` into `folder`; returns its identity (sha256 of the weights file). config.json also lists the
    model's label definitions (`labels`: name, colour, SNOMED-CT codes; `multimodalgen.terminology`)."""
    from safetensors.torch import save_file

    from multimodalgen.personalized.synthetic import SYNTH_VERSION

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: (v.detach().cpu().to(dtype) if v.is_floating_point() else v.detach().cpu()).contiguous()
               for k, v in model.state_dict().items()}
    fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
    os.close(fd)
    save_file(tensors, tmp)
    os.chmod(tmp, 0o644)
    os.replace(tmp, folder / WEIGHTS)
    sha = sha256_file(folder / WEIGHTS)
    config = {"name": name, "kind": "personalized", "version": version,
              "description": description or "personalized multimodal segmentation (X_h) on the foundation encoder",
              "model": model.config.to_dict(), "weights": WEIGHTS, "sha256": sha, "dtype": str(dtype).split(".")[-1],
              "labels": labels_to_json(definitions_for(model.config.labels)),
              "synth_version": synth_version or SYNTH_VERSION, "training": training or {}}
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return BaseModelRef(name, version, sha)


def resolve_model_folder(name_or_path: str | Path | None = None) -> Path:
    """Folder of a personalized model: a path, a shipped model name, or the default `personalized-v2`."""
    from multimodalgen.models.registry import shipped_models_dir

    if name_or_path is not None and (Path(name_or_path) / "config.json").is_file():
        return Path(name_or_path)
    name = str(name_or_path or DEFAULT_MODEL)
    folder = shipped_models_dir() / name
    if (folder / "config.json").is_file():
        return folder
    raise UserInputError(f"personalized model {name!r} not found", expected=f"a folder with config.json, or a "
                         f"model in {shipped_models_dir()}", got=str(name_or_path),
                         fix="run `multimodalgen models list`, or pass the model folder")


def load_model(name_or_path: str | Path | None = None, device: torch.device | str = "cpu"
               ) -> tuple[PersonalizedNet, BaseModelRef]:
    """Load a personalized model (float32, eval mode, on `device`) and its identity."""
    from safetensors.torch import load_file

    folder = resolve_model_folder(name_or_path)
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    if config.get("kind") != "personalized":
        raise UserInputError(f"{folder} is not a personalized model", expected='kind "personalized"',
                             got=repr(config.get("kind")), fix="pass a personalized model folder")
    model = PersonalizedNet(PersonalizedConfig.from_dict(config["model"]))
    weights = folder / config.get("weights", WEIGHTS)
    state = {k: v.float() if v.is_floating_point() else v for k, v in load_file(str(weights)).items()}
    model.load_state_dict(state)
    ref = BaseModelRef(str(config["name"]), str(config["version"]), str(config.get("sha256") or
                                                                          sha256_file(weights)))
    return model.to(device).eval(), ref
