"""The backend worker process: reads protocol requests on stdin, runs them one at a time, writes events to stdout.

Start it with ``python -m multimodalgen.worker [--device auto] [--threads N] [--workdir DIR]``. Only protocol
messages go to the real stdout: the process's stdout file descriptor is redirected to stderr at start, so a
stray ``print`` in an engine (or a native library writing to fd 1) can never corrupt the stream.

A reader thread takes lines from stdin: requests are queued for the main thread, a ``cancel`` for the running
request sets its cancel flag (engines see it at their next ``progress.update``/``check_cancelled``), and
``shutdown`` or end-of-file (the parent died or closed the pipe) makes the worker exit after the current request.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import queue
import shutil
import sys
import tempfile
import threading
import time
import traceback
from typing import Any, TextIO

from multimodalgen.errors import CancelledError, ResourceError, UserInputError
from multimodalgen.progress import Progress
from multimodalgen.worker import protocol
from multimodalgen.worker.state import WorkerState
from multimodalgen.worker.tasks import MissingEngineError, TaskContext, resolve, task_names


class Emitter:
    """Writes protocol messages to the reserved stdout stream (thread-safe, flushed per message)."""

    def __init__(self, stream: TextIO):
        self._stream = stream
        self._lock = threading.Lock()

    def emit(self, message: dict[str, Any]) -> None:
        line = protocol.encode(message)
        with self._lock:
            self._stream.write(line)
            self._stream.flush()


def claim_stdout() -> TextIO:
    """Keep a private handle on the original stdout for protocol messages; send fd 1 and sys.stdout to stderr."""
    sys.stdout.flush()
    protocol_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return os.fdopen(protocol_fd, "w", encoding="ascii", newline="\n", buffering=1)


def jsonable(obj: Any) -> Any:
    """Convert numpy scalars/arrays, paths and tuples inside task outputs to plain JSON types."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, pathlib.PurePath):
        return str(obj)
    if hasattr(obj, "tolist") and callable(obj.tolist):
        return obj.tolist()
    if isinstance(obj, float) and obj != obj:  # NaN is not valid JSON
        return None
    return obj


def classify_exception(exc: BaseException) -> tuple[str, str]:
    """Map an exception to (error kind, one-line message for the user)."""
    if isinstance(exc, CancelledError):
        return "cancelled", "cancelled by the user"
    if isinstance(exc, MissingEngineError):
        return "missing_engine", str(exc)
    if isinstance(exc, ResourceError):
        return "resource", str(exc)
    if isinstance(exc, UserInputError):
        return "user_input", str(exc)
    if isinstance(exc, MemoryError):
        return "resource", ("out of memory (RAM): crop the volume (Crop Volume module), use a coarser preset, "
                            "or close other programs")
    text = str(exc)
    if "out of memory" in text.lower() and "cuda" in text.lower():
        return "resource", ("out of GPU memory: choose device 'cpu' in Settings, crop the volume, or use a "
                            "coarser preset")
    return "internal", f"{type(exc).__name__}: {text}".strip()[:500]


class Worker:
    """One worker: a queue of requests, the warm state, and the id + cancel flag of the running request."""

    def __init__(self, emitter: Emitter, device: str = "auto", workdir: pathlib.Path | None = None):
        self.emitter = emitter
        self.device = device
        self.owns_workdir = workdir is None   # a folder it made itself is removed by `close` (patient data in /tmp)
        self.workdir = pathlib.Path(workdir or tempfile.mkdtemp(prefix="mmg-worker-"))
        self.state = WorkerState()
        self.requests: queue.Queue[dict | None] = queue.Queue()
        self._lock = threading.Lock()
        self._current_id: str | None = None
        self._cancel = threading.Event()
        self._cancelled_ids: set[str] = set()

    # -- input side (reader thread) ------------------------------------------------------------------------
    def read_loop(self, stream: TextIO) -> None:
        """Read messages until EOF; dispatch cancel immediately, queue requests; queue None at the end."""
        for line in stream:
            if not line.strip():
                continue
            try:
                message = protocol.decode(line)
                protocol.validate(message, direction="in")
            except protocol.ProtocolError as exc:
                self.emitter.emit(protocol.error("protocol", "protocol", f"bad message: {exc}"))
                continue
            if message["type"] == "request":
                self.requests.put(message)
            elif message["type"] == "cancel":
                self._handle_cancel(message["id"])
            elif message["type"] == "shutdown":
                break
        self.requests.put(None)

    def _handle_cancel(self, request_id: str) -> None:
        with self._lock:
            if request_id == self._current_id:
                self._cancel.set()
            else:
                self._cancelled_ids.add(request_id)  # still queued: answer it as cancelled when it comes up

    def close(self) -> None:
        """Remove the work folder if this worker created it (outputs of requests without `output_dir`; a client
        reads them when their result arrives, before it shuts the worker down). A `--workdir` given is kept."""
        if self.owns_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    # -- execution side (main thread) ----------------------------------------------------------------------
    def serve(self) -> None:
        """Run queued requests until shutdown/EOF."""
        while True:
            message = self.requests.get()
            if message is None:
                return
            self.run_request(message)

    def run_request(self, message: dict[str, Any]) -> None:
        request_id, task = message["id"], message["task"]
        with self._lock:
            if request_id in self._cancelled_ids:
                self._cancelled_ids.discard(request_id)
                self.emitter.emit(protocol.error(request_id, "cancelled", "cancelled before it started"))
                return
            self._current_id = request_id
            self._cancel = threading.Event()
            cancel_event = self._cancel
        started = time.monotonic()

        def report(stage: str, fraction: float, text: str) -> None:
            self.emitter.emit(protocol.progress(request_id, stage, fraction, text))

        progress = Progress("none", callback=report, cancel_event=cancel_event)
        request_dir = self.workdir / _safe_name(request_id)
        try:
            try:
                fn = resolve(task)
            except KeyError:
                self.emitter.emit(protocol.error(
                    request_id, "unknown_task",
                    f"unknown task '{task}'; this worker knows: {', '.join(task_names())} "
                    "(the Slicer module and the backend may be different versions)"))
                return
            params = dict(message.get("params") or {})
            out_dir = params.get("output_dir")
            request_dir = pathlib.Path(out_dir) if out_dir else request_dir
            request_dir.mkdir(parents=True, exist_ok=True)
            ctx = TaskContext(request_id=request_id, progress=progress, state=self.state,
                              device=str(params.get("device") or self.device), workdir=request_dir)
            progress.check_cancelled()
            outputs = fn(params, ctx)
            progress.check_cancelled()
            self.state.requests_served += 1
            self.emitter.emit(protocol.result(request_id, jsonable(outputs or {}),
                                              seconds=time.monotonic() - started))
        except BaseException as exc:  # noqa: BLE001 - every failure must become a protocol error
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            kind, text = classify_exception(exc)
            detail = traceback.format_exc() if kind == "internal" else None
            if detail:
                sys.stderr.write(detail)
            self.emitter.emit(protocol.error(request_id, kind, text, detail))
        finally:
            with self._lock:
                self._current_id = None


def _safe_name(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text)[:64] or "request"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m multimodalgen.worker",
                                     description="MultiModalGen backend worker (JSON lines on stdin/stdout).")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda[:N] (default auto)")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0 = default)")
    parser.add_argument("--workdir", default=None, help="folder for outputs of requests without output_dir")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from multimodalgen.device import set_threads

    set_threads(args.threads)  # read when torch is imported by the first verb
    import multimodalgen

    emitter = Emitter(claim_stdout())
    worker = Worker(emitter, device=args.device, workdir=pathlib.Path(args.workdir) if args.workdir else None)
    handshake_sent = threading.Event()  # a bad first input line must not be answered before `ready`

    def read_after_handshake() -> None:
        handshake_sent.wait()
        worker.read_loop(sys.stdin)

    reader = threading.Thread(target=read_after_handshake, name="mmg-worker-stdin", daemon=True)
    reader.start()
    emitter.emit(protocol.ready(multimodalgen.__version__, os.getpid(), task_names()))
    handshake_sent.set()
    try:
        worker.serve()
    finally:
        worker.close()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
