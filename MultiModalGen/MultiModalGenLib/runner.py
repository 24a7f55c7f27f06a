"""Runs backend tasks for the Logic: owns the settings and the backend (local worker or remote server), starts a
task, delivers its events, imports its results on the main thread, cancels it, cleans its temp files.

Usable without the GUI: ``wait=True`` blocks (pumping Slicer events when a `tick` is given) and raises on
failure; ``wait=False`` returns the Job at once and the owner calls `poll()` periodically (the Widget's QTimer),
which calls `onFinished(result, error)` when the task ends. `error` is None or ``{"kind", "message"}``.
A task that succeeded with plausibility warnings (e.g. `segment`'s "implausible tissue proportions", `register`'s
"deformable stage not used") leaves them in `lastWarnings`, logged (Python logging and `logCallback`) before
`onFinished` runs, so the panel can show them: never a silent questionable answer.
"""

from __future__ import annotations

import dataclasses
import logging
import pathlib
import shutil
from typing import Any, Callable

from MultiModalGenLib.parameters import Settings, loadSettings, saveSettings
from MultiModalGenLib.worker_client import makeBackend
from multimodalgen.errors import CancelledError, UserInputError


class TaskFailed(RuntimeError):
    """A task ended with an error; `kind` is the protocol error kind (see multimodalgen.worker.protocol)."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


@dataclasses.dataclass
class _Pending:
    job: Any
    importResult: Callable[[dict], Any]
    onFinished: Callable[[Any, dict | None], None] | None
    folder: pathlib.Path | None


class TaskRunner:
    """Backend + settings + the one running task (one at a time per panel)."""

    def __init__(self, settingsStore=None, backendFactory=makeBackend):
        self.settingsStore = settingsStore
        self.backendFactory = backendFactory
        self._settings: Settings | None = None
        self._backend = None
        self._pending: _Pending | None = None
        self.eventCallback: Callable[[Any, dict], None] | None = None
        self.logCallback: Callable[[str], None] | None = None
        self.keepTemporaryFiles = False
        self.lastWarnings: list[str] = []   # warnings of the last task that succeeded (see the module docstring)

    # -- settings and backend ------------------------------------------------------------------------------------
    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = loadSettings(self.settingsStore) if self.settingsStore is not None else Settings()
        return self._settings

    def updateSettings(self, **changes) -> Settings:
        """Validate and store new settings; the backend restarts on the next task if device/backend changed."""
        new = dataclasses.replace(self.settings, **changes)
        if self.settingsStore is not None:
            saveSettings(self.settingsStore, new)
        if self._backend is not None and (new.backend, new.device, new.threads, new.serverUrl, new.serverToken) != (
                self.settings.backend, self.settings.device, self.settings.threads, self.settings.serverUrl,
                self.settings.serverToken):
            if self.isBusy():
                raise UserInputError("cannot change the backend while a task runs", fix="cancel it or wait")
            self._backend.close()
            self._backend = None
        self._settings = new
        return new

    def backend(self):
        if self._backend is None:
            self._backend = self.backendFactory(self.settings)
        return self._backend

    def isBusy(self) -> bool:
        return self._pending is not None and not self._pending.job.done

    # -- running -------------------------------------------------------------------------------------------------
    def run(self, task: str, params: dict, importResult: Callable[[dict], Any] = lambda outputs: outputs,
            wait: bool = True, onFinished=None, folder: pathlib.Path | None = None,
            tick: Callable[[], None] | None = None, onEvent=None):
        """Start `task`; see the module docstring for `wait`. With `folder`, outputs go to `folder/out` and the
        folder is deleted when the task ends (unless keepTemporaryFiles)."""
        if self.isBusy():
            raise UserInputError("another MultiModalGen task is running", fix="wait for it or click Cancel")
        params = dict(params)
        self.lastWarnings = []
        if folder is not None and self.settings.backend == "local":
            params["output_dir"] = str(pathlib.Path(folder) / "out")
        params.setdefault("device", self.settings.device)

        def forward(job, message):
            if onEvent is not None:
                onEvent(job, message)
            if self.eventCallback is not None:
                self.eventCallback(job, message)

        job = self.backend().submit(task, params, forward)
        self._pending = _Pending(job, importResult, onFinished, folder)
        if not wait:
            return job
        self.backend().wait(job, tick=tick)
        return self._finish(raiseErrors=True)

    def poll(self) -> None:
        """Deliver pending events; import the result and call onFinished when the task has ended."""
        if self._pending is None or self._backend is None:
            return
        self._backend.poll()
        if self._pending.job.done:
            self._finish(raiseErrors=False)

    def cancel(self) -> float:
        """Stop the running task (cooperatively, else by stopping the worker). Returns the seconds it took."""
        if self._pending is None or self._backend is None:
            return 0.0
        seconds = self._backend.cancel(self._pending.job)
        self._finish(raiseErrors=False)
        return seconds

    def shutdown(self) -> None:
        if self.isBusy():
            self.cancel()
        if self._backend is not None:
            self._backend.close()
            self._backend = None

    def _finish(self, raiseErrors: bool):
        pending, self._pending = self._pending, None
        if pending is None:
            return None
        job, result, error = pending.job, None, None
        if job.state == "done":
            self.lastWarnings = [str(w) for w in (job.outputs or {}).get("warnings") or []]
            for warning in self.lastWarnings:
                logging.warning("MultiModalGen %s: %s", job.task, warning)
                if self.logCallback is not None:
                    self.logCallback(f"warning: {warning}")
            try:
                result = pending.importResult(job.outputs or {})
            except Exception as exc:  # noqa: BLE001 - an import failure is shown, the worker stays usable
                logging.exception("MultiModalGen: importing the result of %s failed", job.task)
                error = {"kind": "user_input" if isinstance(exc, UserInputError) else "internal", "message": str(exc)}
        else:
            error = {"kind": job.error_kind or "internal", "message": job.error_message or job.state}
            if job.error_detail and self.logCallback is not None:
                self.logCallback(job.error_detail)
        if pending.folder is not None and not self.keepTemporaryFiles:
            shutil.rmtree(pending.folder, ignore_errors=True)
        if pending.onFinished is not None:
            pending.onFinished(result, error)
        if error is not None and raiseErrors:
            if error["kind"] == "cancelled":
                raise CancelledError(error["message"])
            if error["kind"] in ("user_input", "resource"):
                raise UserInputError(error["message"])
            raise TaskFailed(error["kind"], error["message"])
        return result
