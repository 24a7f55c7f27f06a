"""Backends the Slicer module talks to: a persistent local worker process, or a remote `multimodalgen serve`.

Both offer the same small interface, so the Logic never knows which one it has:

    job = backend.submit(task, params, onEvent)   # returns at once; params hold {"file": local path} refs
    backend.poll()                                 # drain events on the caller's thread (QTimer in Slicer)
    backend.wait(job, tick=slicer.app.processEvents)
    backend.cancel(job)                            # returns the seconds until it stopped
    backend.close()

`onEvent(job, message)` receives protocol messages (progress / result / error, see
`multimodalgen.worker.protocol`) on the thread that calls `poll`, so it may touch MRML. Outputs come back as
``{"file": local path}`` references in both cases (the remote backend downloads them first).

Standard library only (no slicer, qt or torch imports), so it runs and is tested outside Slicer. The protocol and the
job state machine are the backend's own (`multimodalgen.worker.protocol`, `multimodalgen.worker.process.Job.apply`):
both backends update their jobs through `Job.apply`, so error details and the message-id guard are the same.
"""

from __future__ import annotations

import json
import os
import pathlib
import queue
import shutil
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Callable

from multimodalgen.worker import protocol
from multimodalgen.worker.process import Job, WorkerClient, worker_command

EventCallback = Callable[[Job, dict], None]


class BackendError(RuntimeError):
    """A backend problem the panel shows as is (connection refused, wrong token, version mismatch...)."""

    def __init__(self, message: str, kind: str = "server"):
        super().__init__(message)
        self.kind = kind


def moduleDirectory() -> pathlib.Path:
    """The Slicer module folder (contains the bundled `multimodalgen` backend package)."""
    return pathlib.Path(__file__).resolve().parent.parent


def defaultPythonExecutable() -> str:
    """Slicer's Python for the worker: `PythonSlicer` (on PATH or next to the running interpreter), else
    `sys.executable` (outside Slicer, or python-real which inherits Slicer's environment from this process)."""
    found = shutil.which("PythonSlicer")
    if found:
        return found
    exe = pathlib.Path(sys.executable)
    for name in ("PythonSlicer.exe", "PythonSlicer"):
        candidate = exe.parent / name
        if candidate.is_file():
            return str(candidate)
    return str(exe)


def workerEnvironment(extra: dict[str, str] | None = None, device: str = "auto") -> dict[str, str]:
    """Environment for the worker: this process's, with the module folder first on PYTHONPATH."""
    env = dict(os.environ)
    paths = [str(moduleDirectory())] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    env["PYTHONIOENCODING"] = "utf-8"
    if device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = "-1"
    env.update(extra or {})
    return env


class LocalBackend:
    """A persistent worker process on this machine (models and features stay warm between actions).

    Args:
        python: interpreter for the worker (default `defaultPythonExecutable()`).
        device: "auto", "cpu" or "cuda"; threads: CPU threads (0 = default).
        cancelGraceS: cooperative-cancel wait before the worker is stopped.
    """

    kind = "local"

    def __init__(self, python: str | None = None, device: str = "auto", threads: int = 0,
                 cancelGraceS: float = 0.3, logCallback: Callable[[str], None] | None = None,
                 dataFolder: str | None = None):
        extra = {"MULTIMODALGEN_HOME": str(dataFolder)} if dataFolder else None
        self.client = WorkerClient(worker_command(python or defaultPythonExecutable(), device, threads),
                                   env=workerEnvironment(extra, device=device), cwd=tempfile.gettempdir(),
                                   cancel_grace_s=cancelGraceS, on_stderr=logCallback)

    def submit(self, task: str, params: dict, onEvent: EventCallback | None = None) -> Job:
        return self.client.submit(task, params, onEvent)

    def poll(self) -> list[dict]:
        return self.client.poll()

    def wait(self, job: Job, timeout: float | None = None, tick: Callable[[], None] | None = None) -> Job:
        return self.client.wait(job, timeout=timeout, tick=tick)

    def cancel(self, job: Job | None = None) -> float:
        return self.client.cancel(job)

    def isBusy(self) -> bool:
        return self.client.current is not None and not self.client.current.done

    def close(self) -> None:
        self.client.close()

    def describe(self) -> str:
        alive = "running" if self.client.is_alive() else "not started"
        return f"local worker ({alive}, {self.client.restarts} restart(s))"


class HttpApi:
    """Minimal JSON/bytes client for `multimodalgen serve` (urllib; clear messages for the usual failures)."""

    def __init__(self, url: str, token: str, timeout: float = 30.0):
        url = (url or "").strip()
        if not url:
            raise BackendError("no server URL set; enter it in Settings (e.g. http://gpu-box:8765)", "user_input")
        if "://" not in url:
            raise BackendError(f"the server URL '{url}' lacks its scheme; write http://{url}", "user_input")
        self.url = url.rstrip("/")
        self.token = token or ""
        self.timeout = timeout

    def request(self, method: str, path: str, body: Any = None, data_path: pathlib.Path | None = None,
                raw: bool = False, timeout: float | None = None) -> Any:
        headers = {"Authorization": f"Bearer {self.token}"}
        data = None
        handle = None
        if data_path is not None:
            handle = open(data_path, "rb")
            data = handle
            headers["Content-Type"] = "application/octet-stream"
            headers["Content-Length"] = str(data_path.stat().st_size)
        elif body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=timeout or self.timeout) as response:
                payload = response.read()
        except urllib.error.HTTPError as exc:
            raise self._httpError(exc) from exc
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise BackendError(f"cannot reach the MultiModalGen server at {self.url} ({reason}); is "
                               "`multimodalgen serve` running there, and is the address/port right?") from exc
        finally:
            if handle is not None:
                handle.close()
        return payload if raw else json.loads(payload.decode() or "null")

    def _httpError(self, exc: urllib.error.HTTPError) -> BackendError:
        try:
            body = json.loads(exc.read().decode() or "{}")
        except ValueError:
            body = {}
        message = body.get("message") or f"HTTP {exc.code} {exc.reason}"
        kind = body.get("kind", "server")
        if exc.code == 401:
            message = "the server refused the access token: " + message
        elif exc.code in (502, 504):
            message = (f"HTTP {exc.code} from a gateway between you and the server: the server may be down, "
                       "restarting or too slow; try again, or connect without the proxy")
        return BackendError(message, kind if kind in protocol.ERROR_KINDS else "server")


class RemoteBackend:
    """Runs tasks on a `multimodalgen serve` server. Uploads file inputs, starts a job, polls its status in a
    background thread, downloads file outputs into `downloadDir`. `interactive=True` runs jobs in a server
    session (one warm worker), re-opened automatically once if it expired."""

    kind = "remote"

    def __init__(self, url: str, token: str, downloadDir: str | None = None, pollInterval: float = 0.25,
                 interactive: bool = False, timeout: float = 30.0):
        self.api = HttpApi(url, token, timeout)
        self.downloadDir = pathlib.Path(downloadDir or tempfile.mkdtemp(prefix="mmg-remote-"))
        self.pollInterval = pollInterval
        self.interactive = interactive
        self.sessionId: str | None = None
        self.serverInfo: dict | None = None
        self.current: Job | None = None
        self._remoteId: str | None = None
        self._events: queue.Queue[dict] = queue.Queue()
        self._cancelRequested = threading.Event()
        self._thread: threading.Thread | None = None

    # -- connection ----------------------------------------------------------------------------------------
    def checkVersion(self) -> dict:
        """GET /version; raises BackendError when unreachable, unauthorised or speaking another protocol."""
        info = self.api.request("GET", "/version", timeout=10)
        if info.get("protocol") != protocol.PROTOCOL_VERSION:
            raise BackendError(f"the server speaks protocol {info.get('protocol')} (MultiModalGen "
                               f"{info.get('version')}), this module {protocol.PROTOCOL_VERSION}: update the "
                               "server or the extension so both match", "user_input")
        self.serverInfo = info
        return info

    def _ensureSession(self, reopen: bool = False) -> str:
        if reopen or self.sessionId is None:
            self.sessionId = self.api.request("POST", "/sessions")["id"]
        return self.sessionId

    # -- jobs ----------------------------------------------------------------------------------------------
    def submit(self, task: str, params: dict, onEvent: EventCallback | None = None) -> Job:
        if self.isBusy():
            raise RuntimeError("the server is busy with a previous action of this panel; wait or cancel it")
        if self.serverInfo is None:
            self.checkVersion()
        job = Job(id=f"remote-{time.monotonic_ns()}", task=task, params=dict(params), on_event=onEvent)
        self.current, self._remoteId = job, None
        self._events = queue.Queue()
        self._cancelRequested.clear()
        self._thread = threading.Thread(target=self._run, args=(job,), name="mmg-remote-job", daemon=True)
        self._thread.start()
        return job

    def _run(self, job: Job) -> None:
        """Background thread: upload -> start -> poll -> download; pushes protocol messages to the queue."""
        try:
            self._events.put(protocol.progress(job.id, "upload", 0.0, "uploading inputs"))
            params = protocol.map_file_refs(job.params, self._upload)
            status = self._startJob(job.task, params)
            self._remoteId = status["id"]
            while status["state"] == "running":
                if self._cancelRequested.is_set():
                    self.api.request("DELETE", f"/jobs/{self._remoteId}")
                time.sleep(self.pollInterval)
                status = self.api.request("GET", f"/jobs/{self._remoteId}")
                self._events.put(protocol.progress(job.id, status.get("stage") or "running",
                                                   status.get("fraction"), status.get("message") or ""))
            result = self.api.request("GET", f"/jobs/{self._remoteId}/result")
            if result["state"] == "done":
                outputs = protocol.map_file_refs(result.get("outputs") or {}, self._download)
                self._events.put(protocol.result(job.id, outputs))
            else:
                kind = result.get("error_kind") or ("cancelled" if result["state"] == "cancelled" else "server")
                self._events.put(protocol.error(job.id, kind if kind in protocol.ERROR_KINDS else "server",
                                                result.get("error_message") or result["state"]))
        except BackendError as exc:
            self._events.put(protocol.error(job.id, exc.kind if exc.kind in protocol.ERROR_KINDS else "server",
                                            str(exc)))
        except Exception as exc:  # noqa: BLE001 - report every failure to the panel
            self._events.put(protocol.error(job.id, "internal", f"{type(exc).__name__}: {exc}"))

    def _startJob(self, task: str, params: dict) -> dict:
        body = {"task": task, "params": params}
        if not self.interactive:
            return self.api.request("POST", "/jobs", body)
        try:
            return self.api.request("POST", f"/sessions/{self._ensureSession()}/jobs", body)
        except BackendError as exc:
            if exc.kind != "session_expired":
                raise
            return self.api.request("POST", f"/sessions/{self._ensureSession(reopen=True)}/jobs", body)

    def _upload(self, ref: dict) -> dict:
        if "file" not in ref:
            return ref
        path = pathlib.Path(ref["file"])
        name = urllib.parse.quote("".join(path.name.split()) or "upload.bin")
        answer = self.api.request("POST", f"/uploads?name={name}", data_path=path, timeout=600)
        return {"upload": answer["upload"]}

    def _download(self, ref: dict) -> dict:
        if "download" not in ref or not ref["download"]:
            return ref
        target = self.downloadDir / (self._remoteId or "job") / pathlib.PurePosixPath(ref["download"]).name
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "wb") as handle:
            handle.write(self.api.request("GET", ref["download"], raw=True, timeout=600))
        return protocol.file_ref(str(target))

    # -- same interface as LocalBackend --------------------------------------------------------------------
    def poll(self) -> list[dict]:
        handled = []
        job = self.current
        while job is not None:
            try:
                message = self._events.get_nowait()
            except queue.Empty:
                break
            handled.append(message)
            job.apply(message)
        return handled

    def wait(self, job: Job, timeout: float | None = None, tick: Callable[[], None] | None = None) -> Job:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not job.done:
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"remote task '{job.task}' did not finish within {timeout} s")
            self.poll()
            if tick is not None:
                tick()
            time.sleep(0.02)
        return job

    def cancel(self, job: Job | None = None) -> float:
        job = job or self.current
        if job is None or job.done:
            return 0.0
        start = time.monotonic()
        self._cancelRequested.set()
        if self._remoteId is not None:
            try:
                self.api.request("DELETE", f"/jobs/{self._remoteId}", timeout=5)
            except BackendError:
                pass
        deadline = start + 2.0
        while not job.done and time.monotonic() < deadline:
            self.poll()
            time.sleep(0.02)
        if not job.done:
            job.apply(protocol.error(job.id, "cancelled", "cancelled by the user"))
        return time.monotonic() - start

    def isBusy(self) -> bool:
        return self.current is not None and not self.current.done

    def close(self) -> None:
        if self.isBusy():
            self.cancel()
        if self.sessionId is not None:
            try:
                self.api.request("DELETE", f"/sessions/{self.sessionId}", timeout=5)
            except BackendError:
                pass
            self.sessionId = None
        shutil.rmtree(self.downloadDir, ignore_errors=True)

    def describe(self) -> str:
        return f"remote server {self.api.url}"


def makeBackend(settings) -> LocalBackend | RemoteBackend:
    """The backend described by `settings` (a `parameters.Settings`): local worker or remote server."""
    if settings.backend == "remote":
        return RemoteBackend(settings.serverUrl, settings.serverToken, interactive=True)
    return LocalBackend(python=settings.pythonExecutable or None, device=settings.device, threads=settings.threads,
                        dataFolder=settings.dataFolder)
