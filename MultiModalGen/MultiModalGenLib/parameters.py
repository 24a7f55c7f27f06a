"""User-level settings of the module (not saved in the scene): device, backend, folders, threads.

Stored in Slicer's application settings (QSettings) under ``MultiModalGen/``. `Settings` is a plain dataclass,
validated once; `loadSettings`/`saveSettings` take any object with ``value(key, default)`` / ``setValue(key,
value)`` (a ``qt.QSettings`` in Slicer, a dict-backed stand-in in tests), so this file never imports qt.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib

from multimodalgen.errors import UserInputError

SETTINGS_PREFIX = "MultiModalGen/"
DEVICES = ("auto", "cpu", "cuda")
BACKENDS = ("local", "remote")
REGISTRATION_MODES = ("rigid", "affine", "deformable")
REGISTRATION_PRESETS = ("fast", "default", "accurate")


def defaultDataFolder() -> pathlib.Path:
    """The backend's user data folder (``~/.MultiModalGen`` or MULTIMODALGEN_HOME), shared with the command line."""
    from multimodalgen.models.registry import user_data_dir

    return user_data_dir()


@dataclasses.dataclass
class Settings:
    """Module settings.

    Attributes:
        device: "auto" (CUDA when present), "cpu" or "cuda".
        backend: "local" (a worker process on this computer) or "remote" (`multimodalgen serve`).
        serverUrl/serverToken: remote server address (http://host:port) and its access token.
        dataFolder: user folder holding ``adapters/`` (fine-tuned adapters) and imported weights.
        threads: CPU threads for the worker (0 = all cores).
        pythonExecutable: interpreter for the local worker ("" = Slicer's own Python).
    """

    device: str = "auto"
    backend: str = "local"
    serverUrl: str = ""
    serverToken: str = ""
    dataFolder: str = ""
    threads: int = 0
    pythonExecutable: str = ""

    def __post_init__(self) -> None:
        if self.device not in DEVICES:
            raise UserInputError("unknown device", expected=" or ".join(DEVICES), got=repr(self.device))
        if self.backend not in BACKENDS:
            raise UserInputError("unknown backend", expected=" or ".join(BACKENDS), got=repr(self.backend))
        self.threads = int(self.threads or 0)
        if self.threads < 0:
            raise UserInputError("invalid thread count", expected="0 (all cores) or more", got=str(self.threads))
        if self.backend == "remote" and self.serverUrl and "://" not in self.serverUrl:
            raise UserInputError("the server URL lacks its scheme", expected="http://host:port",
                                 got=self.serverUrl, fix=f"write http://{self.serverUrl}")
        self.dataFolder = self.dataFolder or str(defaultDataFolder())

    @property
    def adaptersFolder(self) -> pathlib.Path:
        return pathlib.Path(self.dataFolder) / "adapters"


def loadSettings(store) -> Settings:
    """Read settings from a QSettings-like `store` (missing keys take the defaults)."""
    defaults = Settings()
    values = {}
    for field in dataclasses.fields(Settings):
        raw = store.value(SETTINGS_PREFIX + field.name, getattr(defaults, field.name))
        values[field.name] = int(raw) if field.type in ("int", int) and str(raw).strip() else raw
    try:
        return Settings(**values)
    except UserInputError:
        return defaults  # corrupted settings must never lock the user out of the module


def saveSettings(store, settings: Settings) -> None:
    """Write every field to the QSettings-like `store`."""
    for field in dataclasses.fields(Settings):
        store.setValue(SETTINGS_PREFIX + field.name, getattr(settings, field.name))
