"""Progress reporting and cancellation for long work.

Engines take a `Progress` and call `update(stage, fraction, message)` and `check_cancelled()`. Sinks: a text bar on
stderr, JSON lines on stdout (`{"event": "progress", "stage", "fraction", "message"}`, read by the Slicer worker and
scripts), or nothing. Cancellation is a `threading.Event` (set by a signal handler, a worker or a GUI thread).
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Callable, TextIO

from multimodalgen.errors import CancelledError

MODES = ("bar", "json", "none")


class Progress:
    """Reports progress of one task to a sink and carries its cancel flag.

    Args:
        mode: "bar" (stderr text bar), "json" (one JSON object per line on `stream`), "none".
        callback: optional `f(stage, fraction, message)` called on every update (used by workers and tests).
        cancel_event: set it to request cancellation; `check_cancelled()` then raises `CancelledError`.
    """

    def __init__(self, mode: str = "none", *, stream: TextIO | None = None,
                 callback: Callable[[str, float, str], None] | None = None,
                 cancel_event: threading.Event | None = None):
        if mode not in MODES:
            raise ValueError(f"progress mode must be one of {MODES}, got {mode!r}")
        self.mode = mode
        self.stream = stream
        self.callback = callback
        self.cancel_event = cancel_event or threading.Event()
        self._last_bar = 0.0
        self._start = time.monotonic()

    @classmethod
    def null(cls) -> "Progress":
        """A silent Progress that never cancels."""
        return cls("none")

    def update(self, stage: str, fraction: float, message: str = "") -> None:
        """Report `fraction` in [0, 1] of `stage` done, then honour a pending cancel."""
        fraction = float(min(1.0, max(0.0, fraction)))
        if self.callback is not None:
            self.callback(stage, fraction, message)
        if self.mode == "json":
            stream = self.stream or sys.stdout
            stream.write(json.dumps({"event": "progress", "stage": stage, "fraction": round(fraction, 4),
                                     "message": message}) + "\n")
            stream.flush()
        elif self.mode == "bar":
            now = time.monotonic()
            if fraction >= 1.0 or now - self._last_bar > 0.2:
                self._last_bar = now
                stream = self.stream or sys.stderr
                filled = int(round(fraction * 30))
                stream.write(f"\r{stage:<14} [{'#' * filled}{'.' * (30 - filled)}] {fraction * 100:5.1f}% "
                             f"{now - self._start:6.1f}s {message[:40]:<40}")
                if fraction >= 1.0:
                    stream.write("\n")
                stream.flush()
        self.check_cancelled()

    def check_cancelled(self) -> None:
        """Raise `CancelledError` if cancellation was requested."""
        if self.cancel_event.is_set():
            raise CancelledError("cancelled by the user")

    def cancel(self) -> None:
        """Request cancellation (thread-safe)."""
        self.cancel_event.set()

    def sub(self, stage: str, start: float, stop: float) -> "SubProgress":
        """A view reporting fractions of `[start, stop]` of this Progress under `stage`."""
        return SubProgress(self, stage, start, stop)


class SubProgress:
    """Maps a sub-task's 0..1 onto a range of its parent's progress (same cancel flag)."""

    def __init__(self, parent: Progress, stage: str, start: float, stop: float):
        self.parent, self.stage, self.start, self.stop = parent, stage, start, stop

    def update(self, stage: str, fraction: float, message: str = "") -> None:
        self.parent.update(stage or self.stage, self.start + (self.stop - self.start) * fraction, message)

    def check_cancelled(self) -> None:
        self.parent.check_cancelled()

    def sub(self, stage: str, start: float, stop: float) -> "SubProgress":
        width = self.stop - self.start
        return SubProgress(self.parent, stage, self.start + width * start, self.start + width * stop)

    @property
    def cancel_event(self) -> threading.Event:
        return self.parent.cancel_event
