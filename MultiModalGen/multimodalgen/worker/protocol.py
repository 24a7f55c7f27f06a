"""The worker protocol: JSON lines between a client (Slicer, the HTTP server) and a backend worker process.

This module is the ONE place the message schema is defined. Every message is a JSON object on one line
(UTF-8, ASCII-escaped so non-UTF-8 Windows consoles never break it), terminated by ``\\n``.

Client -> worker (stdin)::

    {"type": "request",  "id": "r1", "task": "register", "params": {...}}
    {"type": "cancel",   "id": "r1"}           # cooperative cancel; the client stops the process if the
                                               # worker has not answered within a short grace period
    {"type": "shutdown"}                        # finish and exit (EOF on stdin means the same)

Worker -> client (stdout; everything else the backend prints goes to stderr)::

    {"type": "ready",    "protocol": 1, "version": "0.1.0", "pid": 123, "tasks": ["register", ...]}
    {"type": "progress", "id": "r1", "stage": "affine", "fraction": 0.42, "message": "level 2/3"}
    {"type": "result",   "id": "r1", "outputs": {...}, "seconds": 3.2}
    {"type": "error",    "id": "r1", "kind": "user_input", "message": "one line for the user", "detail": "..."}

``fraction`` is in [0, 1] or null (unknown). ``kind`` is one of `ERROR_KINDS`. ``detail`` (optional) holds a
traceback for internal errors, for the log only.

Files never travel inside messages. A parameter or output that is a file is a *file reference*:

- ``{"file": "/abs/path.nii.gz"}``   a path on the worker's machine (local worker, or resolved by the server);
- ``{"upload": "u-3f2a"}``           a file uploaded to the server (remote client -> server only);
- ``{"download": "/jobs/j1/files/x.nii.gz"}``  an output the remote client downloads (server -> client only).

`map_file_refs` rewrites references anywhere inside params/outputs, which is how the server and the remote
client translate between the three forms without knowing each task's schema.
"""

from __future__ import annotations

import json
import math
from typing import Any, Callable

#: Bumped when a message changes incompatibly; the client refuses a worker/server with another number.
PROTOCOL_VERSION = 1

MESSAGE_TYPES_IN = ("request", "cancel", "shutdown")
MESSAGE_TYPES_OUT = ("ready", "progress", "result", "error")

#: Error kinds and what the client should do about each.
ERROR_KINDS = {
    "user_input": "the inputs were wrong; the message says how to fix them",
    "resource": "not enough memory (RAM or GPU); try CPU, crop the volume or use a coarser preset",
    "cancelled": "the user cancelled; nothing was written",
    "unknown_task": "the worker does not know this task (version mismatch?)",
    "missing_engine": "the engine for this task is not installed in this backend",
    "protocol": "a malformed message",
    "internal": "a bug or unexpected failure; see the detail/log",
    "worker_died": "the worker process exited; it is restarted on the next action",
    "session_expired": "the server dropped an idle interactive session; start a new one",
    "capacity": "the server is at capacity; try again later",
    "server": "the remote server answered with an error",
}


class ProtocolError(ValueError):
    """A line that is not a valid protocol message (the text says which field is wrong)."""


# -- encoding -------------------------------------------------------------------------------------------------
def encode(message: dict[str, Any]) -> str:
    """One message as a single JSON line (with the trailing newline). Raises ProtocolError if not encodable."""
    validate(message, direction=None)
    try:
        text = json.dumps(message, ensure_ascii=True, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise ProtocolError(f"message is not JSON-serialisable: {exc}") from exc
    return text + "\n"


def decode(line: str | bytes) -> dict[str, Any]:
    """Parse one line into a validated message dict. Raises ProtocolError on anything malformed."""
    if isinstance(line, bytes):
        line = line.decode("utf-8", errors="replace")
    line = line.strip()
    if not line:
        raise ProtocolError("empty line")
    try:
        message = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ProtocolError(f"not JSON ({exc.msg}): {line[:120]!r}") from exc
    if not isinstance(message, dict):
        raise ProtocolError(f"a message must be a JSON object, got {type(message).__name__}")
    validate(message, direction=None)
    return message


def validate(message: dict[str, Any], direction: str | None = None) -> None:
    """Check the fields of one message. `direction` 'in' (to worker), 'out' (from worker) or None (either)."""
    kind = message.get("type")
    allowed = {"in": MESSAGE_TYPES_IN, "out": MESSAGE_TYPES_OUT}.get(direction or "",
                                                                     MESSAGE_TYPES_IN + MESSAGE_TYPES_OUT)
    if kind not in allowed:
        raise ProtocolError(f"unknown message type {kind!r}; expected one of {', '.join(allowed)}")
    needs_id = kind in ("request", "cancel", "progress", "result", "error")
    if needs_id and not (isinstance(message.get("id"), str) and message["id"]):
        raise ProtocolError(f"a {kind} message needs a non-empty string 'id'")
    if kind == "request":
        if not (isinstance(message.get("task"), str) and message["task"]):
            raise ProtocolError("a request needs a non-empty string 'task'")
        if not isinstance(message.get("params", {}), dict):
            raise ProtocolError("a request's 'params' must be a JSON object")
    elif kind == "progress":
        fraction = message.get("fraction")
        if fraction is not None and (not isinstance(fraction, (int, float)) or math.isnan(fraction)
                                     or not -1e-6 <= fraction <= 1 + 1e-6):
            raise ProtocolError(f"progress 'fraction' must be in [0, 1] or null, got {fraction!r}")
    elif kind == "result":
        if not isinstance(message.get("outputs"), dict):
            raise ProtocolError("a result needs an 'outputs' object")
    elif kind == "error":
        if message.get("kind") not in ERROR_KINDS:
            raise ProtocolError(f"unknown error kind {message.get('kind')!r}")
        if not isinstance(message.get("message"), str):
            raise ProtocolError("an error needs a 'message' string")


# -- constructors (so no caller spells a message by hand) -----------------------------------------------------
def request(request_id: str, task: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"type": "request", "id": request_id, "task": task, "params": dict(params or {})}


def cancel(request_id: str) -> dict[str, Any]:
    return {"type": "cancel", "id": request_id}


def shutdown() -> dict[str, Any]:
    return {"type": "shutdown"}


def ready(version: str, pid: int, tasks: list[str]) -> dict[str, Any]:
    return {"type": "ready", "protocol": PROTOCOL_VERSION, "version": version, "pid": pid, "tasks": tasks}


def progress(request_id: str, stage: str, fraction: float | None, message: str = "") -> dict[str, Any]:
    if fraction is not None:
        fraction = float(min(max(fraction, 0.0), 1.0))
    return {"type": "progress", "id": request_id, "stage": str(stage), "fraction": fraction,
            "message": str(message)}


def result(request_id: str, outputs: dict[str, Any], seconds: float | None = None) -> dict[str, Any]:
    msg = {"type": "result", "id": request_id, "outputs": outputs}
    if seconds is not None:
        msg["seconds"] = round(float(seconds), 4)
    return msg


def error(request_id: str, kind: str, message: str, detail: str | None = None) -> dict[str, Any]:
    if kind not in ERROR_KINDS:
        raise ValueError(f"unknown error kind {kind!r}")
    msg = {"type": "error", "id": request_id, "kind": kind, "message": str(message)}
    if detail:
        msg["detail"] = str(detail)
    return msg


# -- file references ------------------------------------------------------------------------------------------
FILE_REF_KEYS = ("file", "upload", "download")


def is_file_ref(value: Any) -> bool:
    """True for ``{"file": str}``, ``{"upload": str}`` or ``{"download": str}`` (exactly one key)."""
    return (isinstance(value, dict) and len(value) == 1 and next(iter(value)) in FILE_REF_KEYS
            and isinstance(next(iter(value.values())), str))


def file_ref(path: str) -> dict[str, str]:
    """A local file reference for `path` (the worker gets absolute paths)."""
    return {"file": str(path)}


def map_file_refs(obj: Any, fn: Callable[[dict[str, str]], Any]) -> Any:
    """Return a copy of `obj` (nested dicts/lists) with every file reference replaced by `fn(ref)`."""
    if is_file_ref(obj):
        return fn(obj)
    if isinstance(obj, dict):
        return {k: map_file_refs(v, fn) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [map_file_refs(v, fn) for v in obj]
    return obj


def collect_file_refs(obj: Any) -> list[dict[str, str]]:
    """All file references inside `obj`, in traversal order."""
    found: list[dict[str, str]] = []

    def _keep(ref: dict[str, str]) -> dict[str, str]:
        found.append(ref)
        return ref

    map_file_refs(obj, _keep)
    return found


def require_file(params: dict[str, Any], name: str, *, optional: bool = False) -> str | None:
    """The local path of file parameter `name` (a ``{"file": path}`` reference or a plain string path)."""
    from multimodalgen.errors import UserInputError

    value = params.get(name)
    if value is None:
        if optional:
            return None
        raise UserInputError(f"parameter '{name}' is missing", expected="a file reference {\"file\": path}",
                             got="nothing", fix=f"pass {name} to the task")
    if isinstance(value, str):
        return value
    if is_file_ref(value) and "file" in value:
        return value["file"]
    raise UserInputError(f"parameter '{name}' is not a local file", expected="{\"file\": path}",
                         got=json.dumps(value)[:80], fix="upload the file first (remote) or give a path")
