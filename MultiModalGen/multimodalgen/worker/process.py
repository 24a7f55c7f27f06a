"""Client side of the worker protocol: start a worker process, send requests, collect events, cancel, restart.

Standard library only (it runs inside Slicer's GUI process and in the HTTP server). Nothing here blocks unless
asked: a reader thread turns the worker's stdout into decoded messages on a queue, and the owner drains them
with `WorkerClient.poll()` on *its* thread (Slicer: a QTimer on the main thread, so callbacks may touch MRML).

Cancel first asks the worker (cooperative, keeps models warm); if the worker has not confirmed within
`cancel_grace_s` (a long native call cannot see the flag), the whole process group is killed, so cancel always
completes within about ``cancel_grace_s + 0.1`` seconds. A worker that dies (crash, out-of-memory kill, cancel)
is reported as a ``worker_died`` error for the running job and started again on the next `submit`.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from typing import Any, Callable

from multimodalgen.worker import protocol

_EOF = {"type": "_eof"}


class WorkerStartError(RuntimeError):
    """The worker process could not be started or did not say it was ready (message says why)."""


@dataclasses.dataclass
class Job:
    """One request's client-side record; updated by `WorkerClient.poll()`.

    state: "running" -> "done" | "failed" | "cancelled". `fraction` is the last reported progress (0..1 or None).
    """

    id: str
    task: str
    params: dict
    state: str = "running"
    stage: str = ""
    fraction: float | None = 0.0
    message: str = ""
    outputs: dict | None = None
    error_kind: str | None = None
    error_message: str | None = None
    error_detail: str | None = None
    started: float = dataclasses.field(default_factory=time.monotonic)
    finished: float | None = None
    on_event: Callable[["Job", dict], None] | None = None

    @property
    def done(self) -> bool:
        return self.state != "running"

    def apply(self, message: dict[str, Any]) -> bool:
        """Update this job from one protocol message (progress / result / error) and call `on_event`: the one job
        state machine of every client (local worker, remote server, Slicer). A message for another request id (a
        late one, e.g. after a timeout) or after the job ended is ignored; returns whether it was applied."""
        if self.done or message.get("id") != self.id:
            return False
        kind = message.get("type")
        if kind == "progress":
            self.stage, self.fraction, self.message = message["stage"], message["fraction"], message["message"]
        elif kind == "result":
            self.outputs, self.fraction, self.state = message["outputs"], 1.0, "done"
        elif kind == "error":
            self.state = "cancelled" if message["kind"] == "cancelled" else "failed"
            self.error_kind, self.error_message = message["kind"], message["message"]
            self.error_detail = message.get("detail")
        if self.done:
            self.finished = time.monotonic()
        if self.on_event is not None:
            self.on_event(self, message)
        return True

    def as_dict(self) -> dict[str, Any]:
        """JSON-serialisable status (what the server returns for GET /jobs/{id})."""
        return {"id": self.id, "task": self.task, "state": self.state, "stage": self.stage,
                "fraction": self.fraction, "message": self.message, "error_kind": self.error_kind,
                "error_message": self.error_message,
                "elapsed_s": round((self.finished or time.monotonic()) - self.started, 3)}


def worker_command(python: str | None = None, device: str = "auto", threads: int = 0,
                   extra_args: list[str] | None = None) -> list[str]:
    """The argv that starts a worker with interpreter `python` (default: this one)."""
    cmd = [python or sys.executable, "-u", "-m", "multimodalgen.worker", "--device", device]
    if threads:
        cmd += ["--threads", str(int(threads))]
    return cmd + list(extra_args or [])


class WorkerProcess:
    """A running worker process with a stdout reader thread and a bounded stderr tail (for error messages)."""

    def __init__(self, command: list[str], env: dict[str, str] | None = None, cwd: str | None = None,
                 stderr_lines: int = 200, on_stderr: Callable[[str], None] | None = None):
        self.command = list(command)
        self.env = env
        self.cwd = cwd
        self.messages: queue.Queue[dict] = queue.Queue()
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=stderr_lines)
        self.on_stderr = on_stderr
        self.ready_message: dict | None = None
        self._proc: subprocess.Popen | None = None
        self._write_lock = threading.Lock()

    # -- lifecycle -----------------------------------------------------------------------------------------
    def start(self, timeout: float = 120.0) -> dict:
        """Start the process and wait for its ``ready`` message; returns it. Raises WorkerStartError."""
        kwargs: dict[str, Any] = {}
        if os.name == "nt":
            kwargs["creationflags"] = (getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)
                                       | getattr(subprocess, "CREATE_NO_WINDOW", 0))
        else:
            kwargs["start_new_session"] = True  # own process group: cancel kills engine children too
        try:
            self._proc = subprocess.Popen(self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE, env=self.env, cwd=self.cwd, **kwargs)
        except OSError as exc:
            raise WorkerStartError(f"cannot start the backend worker ({exc}); command: {self.command[0]}") from exc
        threading.Thread(target=self._read_stdout, name="mmg-client-stdout", daemon=True).start()
        threading.Thread(target=self._read_stderr, name="mmg-client-stderr", daemon=True).start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                message = self.messages.get(timeout=0.05)
            except queue.Empty:
                continue
            if message is _EOF or message.get("type") == "_eof":
                time.sleep(0.1)  # let the stderr reader catch the last lines
                raise WorkerStartError("the backend worker exited while starting "
                                       f"(exit code {self.returncode}): {self.stderr_text(8)}")
            if message.get("type") == "ready":
                if message.get("protocol") != protocol.PROTOCOL_VERSION:
                    self.kill()
                    raise WorkerStartError(
                        f"backend worker speaks protocol {message.get('protocol')}, this client "
                        f"{protocol.PROTOCOL_VERSION}: update the Slicer module and the backend together")
                self.ready_message = message
                return message
        self.kill()
        raise WorkerStartError(f"the backend worker did not start within {timeout:.0f} s: {self.stderr_text(8)}")

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def returncode(self) -> int | None:
        return self._proc.poll() if self._proc else None

    def is_alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def wait_exit(self, timeout: float = 1.0) -> int | None:
        """Wait up to `timeout` s for the process to end (after its stdout closed); returns the exit code."""
        if self._proc is None:
            return None
        try:
            return self._proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def send(self, message: dict) -> None:
        """Write one protocol message to the worker's stdin. Raises BrokenPipeError if it has died."""
        if not self.is_alive():
            raise BrokenPipeError("the backend worker is not running")
        line = protocol.encode(message).encode("ascii")
        with self._write_lock:
            assert self._proc is not None and self._proc.stdin is not None
            self._proc.stdin.write(line)
            self._proc.stdin.flush()

    def kill(self, wait: float = 2.0) -> None:
        """Stop the worker and its children now (SIGKILL to the process group / taskkill /T)."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        try:
            if os.name == "nt":
                subprocess.run(["taskkill", "/F", "/T", "/PID", str(proc.pid)], capture_output=True,
                               timeout=wait, check=False)
            else:
                os.killpg(proc.pid, signal.SIGKILL)
        except (OSError, subprocess.SubprocessError):
            proc.kill()
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            pass

    def close(self, timeout: float = 2.0) -> None:
        """Ask the worker to exit (shutdown message), then kill it if it does not within `timeout`."""
        if self.is_alive():
            try:
                self.send(protocol.shutdown())
                assert self._proc is not None
                self._proc.stdin.close()  # type: ignore[union-attr]
                self._proc.wait(timeout=timeout)
            except (OSError, subprocess.TimeoutExpired, ValueError):
                pass
        self.kill()

    def stderr_text(self, lines: int = 20) -> str:
        tail = list(self.stderr_tail)[-lines:]
        return " | ".join(s.strip() for s in tail if s.strip()) or "(no output)"

    # -- reader threads ------------------------------------------------------------------------------------
    def _read_stdout(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for raw in self._proc.stdout:
            try:
                self.messages.put(protocol.decode(raw))
            except protocol.ProtocolError as exc:
                self.stderr_tail.append(f"[non-protocol stdout] {exc}")
        self.messages.put(_EOF)

    def _read_stderr(self) -> None:
        assert self._proc is not None and self._proc.stderr is not None
        for raw in self._proc.stderr:
            text = raw.decode("utf-8", errors="replace").rstrip("\n")
            self.stderr_tail.append(text)
            if self.on_stderr is not None:
                try:
                    self.on_stderr(text)
                except Exception:  # noqa: BLE001 - a logging callback must never kill the reader
                    pass


class WorkerClient:
    """Runs requests on a persistent worker, one at a time; restarts the worker when it has died.

    Args:
        command: worker argv (see `worker_command`); env/cwd: its environment and folder.
        cancel_grace_s: how long cancel waits for the worker's own confirmation before killing it.
        start_timeout: seconds to wait for the worker's ``ready``.
    """

    def __init__(self, command: list[str] | None = None, env: dict[str, str] | None = None,
                 cwd: str | None = None, cancel_grace_s: float = 0.3, start_timeout: float = 120.0,
                 on_stderr: Callable[[str], None] | None = None):
        self.command = command or worker_command()
        self.env = env
        self.cwd = cwd
        self.cancel_grace_s = float(cancel_grace_s)
        self.start_timeout = float(start_timeout)
        self.on_stderr = on_stderr
        self.process: WorkerProcess | None = None
        self.current: Job | None = None
        self.restarts = 0
        self._ids = itertools.count(1)

    # -- worker lifecycle ----------------------------------------------------------------------------------
    def ensure_started(self) -> dict:
        """Start the worker if it is not running (after a crash or a cancel-kill); returns its ready message."""
        if self.process is not None and self.process.is_alive():
            return self.process.ready_message or {}
        if self.process is not None:
            self.restarts += 1
        self.process = WorkerProcess(self.command, env=self.env, cwd=self.cwd, on_stderr=self.on_stderr)
        return self.process.start(timeout=self.start_timeout)

    def is_alive(self) -> bool:
        return self.process is not None and self.process.is_alive()

    def close(self) -> None:
        """Stop the worker (a running job is reported as cancelled)."""
        if self.current is not None and not self.current.done:
            self._finish(self.current, "cancelled", error=("cancelled", "the worker was closed", None))
        if self.process is not None:
            self.process.close()

    # -- requests ------------------------------------------------------------------------------------------
    def submit(self, task: str, params: dict | None = None,
               on_event: Callable[[Job, dict], None] | None = None) -> Job:
        """Send a request and return its Job immediately (drain events with `poll`, or `wait`)."""
        if self.current is not None and not self.current.done:
            raise RuntimeError(f"the worker is busy with '{self.current.task}'; wait for it or cancel it first")
        self.ensure_started()
        job = Job(id=f"r{next(self._ids)}-{os.getpid()}", task=task, params=dict(params or {}), on_event=on_event)
        self.current = job
        assert self.process is not None
        try:
            self.process.send(protocol.request(job.id, task, job.params))
        except (BrokenPipeError, OSError):
            self._finish(job, "failed", error=("worker_died", self._died_message(), None))
        return job

    def poll(self, timeout: float = 0.0) -> list[dict]:
        """Drain the worker's pending messages, update the current Job, call its `on_event`; returns them.

        Blocks up to `timeout` seconds for the first message. Detects a dead worker.
        """
        handled: list[dict] = []
        if self.process is None:
            return handled
        block = timeout > 0
        while True:
            try:
                message = self.process.messages.get(timeout=timeout) if block else self.process.messages.get_nowait()
            except queue.Empty:
                break
            block = False
            handled.append(message)
            self._handle(message)
        if not handled and self.current is not None and not self.current.done and not self.process.is_alive():
            self._handle(_EOF)  # the reader thread may not have queued EOF yet
        return handled

    def wait(self, job: Job, timeout: float | None = None, tick: Callable[[], None] | None = None) -> Job:
        """Block until `job` finishes (or `timeout`); `tick()` is called between polls (e.g. processEvents)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not job.done:
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"task '{job.task}' did not finish within {timeout} s")
            self.poll(timeout=0.03)
            if tick is not None:
                tick()
        return job

    def run(self, task: str, params: dict | None = None, timeout: float | None = None,
            on_event: Callable[[Job, dict], None] | None = None) -> Job:
        """Submit and wait (for scripts and tests)."""
        return self.wait(self.submit(task, params, on_event), timeout=timeout)

    def cancel(self, job: Job | None = None) -> float:
        """Cancel `job` (default: the current one). Returns the seconds until it was confirmed stopped.

        Sends a cooperative cancel; if the worker has not answered within `cancel_grace_s`, kills it (the next
        submit restarts it).
        """
        job = job or self.current
        if job is None or job.done:
            return 0.0
        start = time.monotonic()
        if self.process is not None and self.process.is_alive():
            try:
                self.process.send(protocol.cancel(job.id))
            except (BrokenPipeError, OSError):
                pass
            deadline = start + self.cancel_grace_s
            while not job.done and time.monotonic() < deadline:
                self.poll(timeout=0.02)
        if not job.done:
            if self.process is not None:
                self.process.kill()
            self._finish(job, "cancelled", error=("cancelled", "cancelled by the user (worker stopped)", None))
        return time.monotonic() - start

    # -- internals -----------------------------------------------------------------------------------------
    def _handle(self, message: dict) -> None:
        job = self.current
        if message is _EOF or message.get("type") == "_eof":
            if job is not None and not job.done:
                self._finish(job, "failed", error=("worker_died", self._died_message(), None))
            return
        if job is not None:
            job.apply(message)

    def _finish(self, job: Job, state: str, error: tuple[str, str, str | None] | None = None) -> None:
        if job.done:
            return
        job.state = state
        job.finished = time.monotonic()
        if error is not None:
            job.error_kind, job.error_message, job.error_detail = error
        if job.on_event is not None and error is not None and error[0] == "worker_died":
            job.on_event(job, protocol.error(job.id, "worker_died", error[1]))

    def _died_message(self) -> str:
        proc = self.process
        code = proc.wait_exit(1.0) if proc is not None else None
        time.sleep(0.05)  # let the stderr reader take the last lines
        tail = proc.stderr_text(5) if proc is not None else ""
        hint = ""
        if code is not None and code in (-9, 137):
            hint = " It was killed (often: out of memory - try a smaller volume or the CPU device)."
        return (f"The backend worker stopped unexpectedly (exit code {code}).{hint} Nothing was changed in the "
                f"scene; it restarts on the next action. Last output: {tail}")
