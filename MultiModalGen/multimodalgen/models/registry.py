"""Where models live and what `multimodalgen models list` shows.

Shipped models: folders under `MultiModalGen/Resources/Models/` (next to this package inside the Slicer module
folder, or `$MULTIMODALGEN_MODELS`), each with `config.json` and a `MODEL_CARD.md`. User data folder:
`$MULTIMODALGEN_HOME` (default `~/.MultiModalGen`, shared by the command line, the worker and the Slicer panel);
user adapters live in its `adapters/` subfolder (or `$MULTIMODALGEN_ADAPTERS`), each with `adapter_config.json`.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

from multimodalgen.errors import UserInputError


#: The shipped model each kind uses when none is named (one place: `encoder.weights.DEFAULT_ENCODER`,
#: `personalized.weights.DEFAULT_MODEL` and `models list` read it).
DEFAULT_MODELS = {"encoder": "encoder-v2", "personalized": "personalized-v10"}

#: The encoder personalized models are initialised from (`personalized.foundation`): personalized-v2 was trained
#: from encoder-v1, so its training command replays exactly.
FOUNDATION_ENCODER = "encoder-v1"


def version_from_name(name: str) -> int | None:
    """The N of a model named `<anything>-vN` ("encoder-v2" -> 2), or None when the name has no such suffix."""
    tail = str(name).rsplit("-v", 1)[-1] if "-v" in str(name) else ""
    return int(tail) if tail.isdigit() else None


@dataclasses.dataclass
class ModelEntry:
    """One shipped model or user adapter."""

    name: str
    kind: str          # "encoder", "personalized", "adapter", ...
    path: Path
    version: str
    description: str
    size_bytes: int

    @property
    def is_default(self) -> bool:
        """True for the shipped model its kind uses when none is named (`DEFAULT_MODELS`)."""
        return DEFAULT_MODELS.get(self.kind) == self.name and self.kind != "adapter"


def shipped_models_dir() -> Path:
    """Folder of shipped models: `$MULTIMODALGEN_MODELS` or `<module folder>/Resources/Models`."""
    env = os.environ.get("MULTIMODALGEN_MODELS")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "Resources" / "Models"


def user_data_dir() -> Path:
    """The user's MultiModalGen folder: `$MULTIMODALGEN_HOME` or `~/.MultiModalGen`."""
    env = os.environ.get("MULTIMODALGEN_HOME")
    return Path(env) if env else Path.home() / ".MultiModalGen"


def user_adapters_dir() -> Path:
    """Folder of user adapters: `$MULTIMODALGEN_ADAPTERS` or `<user data folder>/adapters`."""
    env = os.environ.get("MULTIMODALGEN_ADAPTERS")
    return Path(env) if env else user_data_dir() / "adapters"


def _folder_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _entry(folder: Path, config_name: str, default_kind: str) -> ModelEntry | None:
    config_path = folder / config_name
    if not config_path.is_file():
        return None
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return ModelEntry(folder.name, default_kind, folder, "?", f"unreadable {config_name}", _folder_size(folder))
    return ModelEntry(
        name=str(config.get("name", folder.name)), kind=str(config.get("kind", default_kind)), path=folder,
        version=str(config.get("version", "?")), description=str(config.get("description", "")),
        size_bytes=_folder_size(folder))


def list_models(models_dir: Path | None = None, adapters_dir: Path | None = None) -> list[ModelEntry]:
    """Shipped models then user adapters, sorted by name within each group."""
    entries: list[ModelEntry] = []
    for root, config_name, kind in ((models_dir or shipped_models_dir(), "config.json", "model"),
                                    (adapters_dir or user_adapters_dir(), "adapter_config.json", "adapter")):
        if root.is_dir():
            found = [_entry(folder, config_name, kind) for folder in sorted(root.iterdir()) if folder.is_dir()]
            entries.extend(e for e in found if e is not None)
    return entries


def find_model(name: str, kind: str | None = None) -> ModelEntry:
    """The shipped model or user adapter called `name` (or a path to its folder)."""
    path = Path(name)
    if path.is_dir():
        entry = _entry(path, "config.json", "model") or _entry(path, "adapter_config.json", "adapter")
        if entry:
            return entry
    candidates = [e for e in list_models() if e.name == name or e.path.name == name]
    if kind:
        candidates = [e for e in candidates if e.kind == kind]
    if not candidates:
        known = ", ".join(sorted(e.name for e in list_models())) or "none"
        raise UserInputError(f"no model or adapter named {name!r}", expected=f"one of: {known}",
                             fix="run `multimodalgen models list`, or pass the folder's path")
    return candidates[0]
