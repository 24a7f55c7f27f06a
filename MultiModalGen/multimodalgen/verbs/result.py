"""What every verb driver receives (`RunContext`) and returns (`Result`)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable

from multimodalgen.progress import Progress


@dataclasses.dataclass
class Result:
    """The outcome of one verb run.

    Attributes:
        outputs: output name -> file (or folder, for an adapter) that the run wrote; absolute or as given.
        metrics: JSON-serialisable numbers, short strings and small lists/dicts (e.g. Dice, Jacobian statistics,
            the registration's 4x4 RAS affine, segment names).
        timings: stage -> seconds.
    """

    outputs: dict[str, Path] = dataclasses.field(default_factory=dict)
    metrics: dict[str, Any] = dataclasses.field(default_factory=dict)
    timings: dict[str, float] = dataclasses.field(default_factory=dict)

    def relative_outputs(self, root: Path) -> dict[str, str]:
        """Output names -> paths relative to `root` (outputs outside `root` are left out)."""
        root = Path(root).resolve()
        out = {}
        for name, path in self.outputs.items():
            resolved = Path(path).resolve()
            if resolved == root or root in resolved.parents:
                out[name] = resolved.relative_to(root).as_posix() if resolved != root else "."
        return out

    def to_json(self) -> dict[str, Any]:
        """``{"outputs": {name: path}, "metrics": {...}, "timings": {...}}`` (what the CLI prints)."""
        return {"outputs": {k: str(v) for k, v in self.outputs.items()}, "metrics": dict(self.metrics),
                "timings": {k: round(float(v), 4) for k, v in self.timings.items()}}


@dataclasses.dataclass
class RunContext:
    """What a driver gets besides its parameters.

    Attributes:
        device: "auto", "cpu" or "cuda[:N]" (or a torch.device).
        progress: report with `progress.update(stage, fraction, message)`; honours cancel.
        cache: warm state kept across runs by the worker and batch processes (`worker.state.WorkerState`:
            `get_model(key, load)`, `get_features(image_id, kind, compute)`), or None (load every time).
    """

    device: Any = "cpu"
    progress: Progress = dataclasses.field(default_factory=Progress.null)
    cache: Any = None

    def torch_device(self):
        """The `torch.device` to run on."""
        from multimodalgen.device import resolve_device

        return self.device if not isinstance(self.device, str) else resolve_device(self.device)

    def model(self, key: str, load: Callable[[], Any]) -> Any:
        """`load()` once per process when a cache is present (warm worker / batch process), else every call."""
        return self.cache.get_model(key, load) if self.cache is not None else load()
