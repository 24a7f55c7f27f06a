"""Personalized model folders: `config.json` (kind "personalized") + `model.safetensors` (fp16 by default).

One model-artifact format (`multimodalgen.models.artifact`): config.json keys kind, format, weights, sha256
(verified on load), labels (LabelDefinitions), provenance, plus name, version, description, model
(PersonalizedConfig), dtype, synth_version, training (free-form). The identity used by adapters is
`BaseModelRef(name, version, sha256)`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from multimodalgen.adapters.io import BaseModelRef
from multimodalgen.models.registry import DEFAULT_MODELS
from multimodalgen.errors import UserInputError
from multimodalgen.personalized.config import PersonalizedConfig
from multimodalgen.personalized.model import PersonalizedNet

DEFAULT_MODEL = DEFAULT_MODELS["personalized"]
WEIGHTS = "model.safetensors"


def save_model(folder: str | Path, model: PersonalizedNet, name: str = DEFAULT_MODEL, version: str = "1",
               description: str = "", training: dict[str, Any] | None = None,
               dtype: torch.dtype = torch.float16, synth_version: str | None = None) -> BaseModelRef:
    """Write `model` into `folder` as a model artifact (`multimodalgen.models.artifact`); returns its identity
    (sha256 of the weights file). config.json lists the model's label definitions (`labels`: name, colour,
    SNOMED-CT codes; `multimodalgen.terminology`) and its provenance."""
    from multimodalgen.models.artifact import write_artifact
    from multimodalgen.personalized.synthetic import SYNTH_VERSION
    from multimodalgen.terminology import definitions_for

    tensors = {k: (v.detach().cpu().to(dtype) if v.is_floating_point() else v.detach().cpu()).contiguous()
               for k, v in model.state_dict().items()}
    synth = synth_version or SYNTH_VERSION
    config = {"name": name, "kind": "personalized", "version": version,
              "description": description or "personalized multimodal segmentation (X_h) on the foundation encoder",
              "model": model.config.to_dict(), "dtype": str(dtype).split(".")[-1], "synth_version": synth,
              "training": training or {}}
    written = write_artifact(folder, config, tensors, labels=definitions_for(model.config.labels),
                             provenance={"synth_version": synth, **(training or {})})
    return BaseModelRef(name, version, written["sha256"])


def resolve_model_folder(name_or_path: str | Path | None = None) -> Path:
    """Folder of a personalized model: a path, a shipped model name, or the default (`models.registry.DEFAULT_MODELS`)."""
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
    from multimodalgen.models.artifact import read_artifact

    config, tensors = read_artifact(resolve_model_folder(name_or_path), "personalized")
    model = PersonalizedNet(PersonalizedConfig.from_dict(config["model"]))
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in tensors.items()})
    ref = BaseModelRef(str(config["name"]), str(config["version"]), str(config["sha256"]))
    return model.to(device).eval(), ref
