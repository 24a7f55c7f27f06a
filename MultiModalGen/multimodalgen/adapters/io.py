"""Adapter files: `ADAPTER/adapter.safetensors` (adapter tensors only) + `ADAPTER/adapter_config.json`.

adapter_config.json keys:
    name, kind ("adapter"), version (of this adapter), description   -- what `multimodalgen models list` shows
    format ("safetensors"), weights, sha256 (of the weights, verified on load) -- the one model-artifact format
    (`multimodalgen.models.artifact`) under the adapter's historical file names; format_version (int), adapter
    (AdapterConfig dict), base_model {name, version, sha256}, labels {"0": "background", "1": ...},
    modalities [..], n_parameters, training {...} (free-form: command, steps, metrics, time)

Loading refuses an adapter made for another base model (name, version or sha256) or another label set, with both
sides named in the message. User adapters live in `multimodalgen.models.registry.user_adapters_dir()`.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import torch

from multimodalgen.adapters.config import AdapterConfig
from multimodalgen.errors import UserInputError

FORMAT = 1
WEIGHTS_NAME = "adapter.safetensors"
CONFIG_NAME = "adapter_config.json"


@dataclasses.dataclass(frozen=True)
class BaseModelRef:
    """Identity of the frozen model an adapter was trained on."""

    name: str
    version: str
    sha256: str

    def describe(self) -> str:
        return f"{self.name} v{self.version} (sha256 {self.sha256[:12]})"


@dataclasses.dataclass
class AdapterMeta:
    """Everything in adapter_config.json."""

    name: str
    adapter: AdapterConfig
    base_model: BaseModelRef
    labels: dict[int, str]
    modalities: list[str]
    version: str = "1"
    description: str = ""
    n_parameters: int = 0
    training: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": "adapter", "version": self.version, "description": self.description,
                "format_version": FORMAT, "adapter": self.adapter.to_dict(), "base_model": dataclasses.asdict(self.base_model),
                "labels": {str(k): v for k, v in sorted(self.labels.items())}, "modalities": list(self.modalities),
                "n_parameters": self.n_parameters, "training": self.training}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "AdapterMeta":
        return cls(name=str(data["name"]), adapter=AdapterConfig.from_dict(data["adapter"]),
                   base_model=BaseModelRef(**data["base_model"]),
                   labels={int(k): str(v) for k, v in data["labels"].items()},
                   modalities=[str(m) for m in data["modalities"]], version=str(data.get("version", "1")),
                   description=str(data.get("description", "")), n_parameters=int(data.get("n_parameters", 0)),
                   training=dict(data.get("training", {})))


def save_adapter(folder: str | Path, state: dict[str, torch.Tensor], meta: AdapterMeta,
                 dtype: torch.dtype | None = None) -> Path:
    """Write `state` (adapter tensors only) and `meta` into `folder` (created; files written atomically).

    `dtype` (e.g. torch.float16) casts floating tensors to shrink the file. Returns the folder.
    """

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v).contiguous()
               for k, v in state.items()}
    if not meta.n_parameters:
        meta.n_parameters = int(sum(v.numel() for v in tensors.values()))

    from multimodalgen.models.artifact import write_artifact

    write_artifact(folder, meta.to_dict(), tensors, config_name=CONFIG_NAME, weights_name=WEIGHTS_NAME,
                   metadata={"format_version": str(FORMAT), "base_model": meta.base_model.name})
    return folder


def read_adapter_meta(folder: str | Path) -> AdapterMeta:
    """Read and validate `folder/adapter_config.json` (UserInputError if missing or malformed)."""
    folder = Path(folder)
    path = folder / CONFIG_NAME
    if not path.is_file():
        raise UserInputError(f"{folder} is not an adapter folder", expected=f"{CONFIG_NAME} and {WEIGHTS_NAME}",
                             got="no " + CONFIG_NAME, fix="pass the folder written by `multimodalgen finetune`")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if int(data.get("format_version", 0)) > FORMAT:
            raise UserInputError(f"adapter {folder} has format version {data.get('format_version')}, newer than "
                                 f"this version reads ({FORMAT})", fix="update multimodalgen")
        return AdapterMeta.from_dict(data)
    except (KeyError, TypeError, ValueError, json.JSONDecodeError) as exc:
        if isinstance(exc, UserInputError):
            raise
        raise UserInputError(f"adapter config {path} is malformed ({exc})",
                             fix="re-create the adapter with `multimodalgen finetune`") from None


def check_compatible(meta: AdapterMeta, base: BaseModelRef | None = None,
                     labels: dict[int, str] | None = None) -> None:
    """Refuse an adapter trained for another base model or label set; the message names both sides."""
    if base is not None:
        mine = meta.base_model
        if (mine.name, mine.version) != (base.name, base.version) or (mine.sha256 and base.sha256
                                                                       and mine.sha256 != base.sha256):
            raise UserInputError(f"adapter {meta.name!r} was trained for another base model",
                                 expected=base.describe(), got=mine.describe(),
                                 fix="use an adapter fine-tuned on this base model, or load the base model "
                                     "it names")
    if labels is not None and {int(k): v for k, v in labels.items()} != meta.labels:
        raise UserInputError(f"adapter {meta.name!r} has another label set", expected=_labels(labels),
                             got=_labels(meta.labels), fix="use an adapter fine-tuned for these labels")


def _labels(labels: dict[int, str]) -> str:
    return "{" + ", ".join(f"{k}: {v}" for k, v in sorted(labels.items())) + "}"


def load_adapter(folder: str | Path, base: BaseModelRef | None = None, labels: dict[int, str] | None = None
                 ) -> tuple[AdapterMeta, dict[str, torch.Tensor]]:
    """Read an adapter folder: `(meta, tensors as float32 CPU)`, after `check_compatible`."""

    folder = Path(folder)
    meta = read_adapter_meta(folder)
    check_compatible(meta, base, labels)
    from multimodalgen.models.artifact import read_artifact

    state = read_artifact(folder, "adapter", CONFIG_NAME)[1]  # sha256 verified
    return meta, {k: (v.float() if v.is_floating_point() else v) for k, v in state.items()}


def resolve_adapter_path(name_or_path: str | Path) -> Path:
    """An adapter folder path, or the name of a folder in the user adapter folder."""
    from multimodalgen.models.registry import user_adapters_dir

    path = Path(name_or_path)
    if (path / CONFIG_NAME).is_file():
        return path
    candidate = user_adapters_dir() / str(name_or_path)
    if (candidate / CONFIG_NAME).is_file():
        return candidate
    raise UserInputError(f"adapter {str(name_or_path)!r} not found", expected=f"a folder with {CONFIG_NAME}, or "
                         f"the name of one in {user_adapters_dir()}", got=str(path),
                         fix="check the path, or run `multimodalgen models list`")
