"""One study: run a task on it with failure isolation, and keep its `status.json` (the resume record).

`D/<study_id>/status.json` holds::

    {"study_id", "task", "options", "state": "running" | "done" | "failed",
     "error": null | one line, "error_type", "traceback" (internal errors only),
     "inputs": {column: {"path", "bytes", "mtime_ns", "sha256"} | null},
     "outputs": {name: file name inside the study folder}, "metrics": {...},
     "timings": {"started", "finished" (UTC ISO 8601), "seconds", "hash_seconds", "task_seconds", <task stages>},
     "worker": {"host", "pid", "device", "threads"}}

A study is up to date (skipped on a rerun) when its status is "done" for the same task and options, its
inputs still have the recorded content and its outputs exist. The same `run_study` runs in every engine
(in-process, process pool, Ray actor), so the engines give the same results.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import json
import os
import socket
import time
import traceback
from pathlib import Path
from typing import Any

from multimodalgen.batch.manifest import Study
from multimodalgen.batch.tasks import StudyContext, get_task
from multimodalgen.batch.verb_study import load_task_function
from multimodalgen.errors import CancelledError, UserInputError
from multimodalgen.progress import Progress

STATUS_FILE = "status.json"
_CHUNK = 1 << 20


@dataclasses.dataclass
class Job:
    """Everything a worker needs to process one study (picklable; sent to processes and Ray actors).

    `options` must already be validated (`tasks.validate_options`); `out_root` is the batch output folder D.
    """

    study: Study
    task: str
    options: dict
    out_root: str

    @property
    def out_dir(self) -> Path:
        return Path(self.out_root) / self.study.study_id


def utc_now() -> str:
    """Current UTC time as ISO 8601 with a Z (seconds resolution)."""
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# -- fingerprints -------------------------------------------------------------------------------------------
def _files_of(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]


def quick_stat(path: str | os.PathLike) -> dict[str, int]:
    """Total bytes and newest modification time (ns) of a file or of all files under a folder."""
    files = _files_of(Path(path))
    stats = [f.stat() for f in files]
    return {"bytes": int(sum(s.st_size for s in stats)), "mtime_ns": int(max((s.st_mtime_ns for s in stats),
                                                                           default=0))}


def fingerprint(path: str | os.PathLike) -> dict[str, Any]:
    """`{"path", "bytes", "mtime_ns", "sha256"}` of a file, or of a folder's files (names and contents)."""
    root = Path(path)
    digest = hashlib.sha256()
    for file in _files_of(root):
        if root.is_dir():
            digest.update(str(file.relative_to(root)).encode() + b"\0")
        with open(file, "rb") as handle:
            for chunk in iter(lambda: handle.read(_CHUNK), b""):
                digest.update(chunk)
    return {"path": str(root), **quick_stat(root), "sha256": digest.hexdigest()}


def input_paths(job: Job) -> dict[str, str | None]:
    """The study's inputs plus the task's path options (as `option:<name>`): everything whose content matters."""
    spec = get_task(job.task)
    paths = dict(job.study.inputs)
    for option in spec.options:
        if option.kind == "path" and job.options.get(option.key):
            paths[f"option:{option.key}"] = job.options[option.key]
    return paths


def same_content(recorded: dict | None, path: str | None) -> bool:
    """True if `path` still matches its recorded fingerprint (size+mtime first; the hash only if those moved)."""
    if recorded is None or path is None:
        return recorded is None and path is None
    if recorded.get("path") != path or not Path(path).exists():
        return False
    stat = quick_stat(path)
    if stat["bytes"] != recorded.get("bytes"):
        return False
    if stat["mtime_ns"] == recorded.get("mtime_ns"):
        return True
    return fingerprint(path)["sha256"] == recorded.get("sha256")


# -- status -------------------------------------------------------------------------------------------------
def read_status(study_dir: str | os.PathLike) -> dict | None:
    """The study's status.json, or None if absent or unreadable (an unreadable one means: run again)."""
    try:
        return json.loads((Path(study_dir) / STATUS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def write_status(study_dir: str | os.PathLike, status: dict) -> None:
    """Write status.json atomically."""
    from multimodalgen.io import write_json

    write_json(status, Path(study_dir) / STATUS_FILE)


def normalized(options: dict) -> dict:
    """Options as they round-trip through JSON (so a fresh run compares equal to a recorded one)."""
    return json.loads(json.dumps(options, sort_keys=True, default=str))


def up_to_date(job: Job) -> tuple[bool, str]:
    """(True, "") if the study can be skipped, else (False, why it must run)."""
    status = read_status(job.out_dir)
    if status is None:
        return False, "new"
    if status.get("state") != "done":
        return False, f"previous state {status.get('state')}"
    if status.get("task") != job.task or status.get("options") != normalized(job.options):
        return False, "task or options changed"
    recorded = status.get("inputs") or {}
    paths = input_paths(job)
    if set(recorded) != set(paths) or not all(same_content(recorded[k], paths[k]) for k in paths):
        return False, "inputs changed"
    missing = [name for name, file in (status.get("outputs") or {}).items() if not (job.out_dir / file).exists()]
    if missing:
        return False, f"outputs missing: {', '.join(missing)}"
    return True, ""


def failed_status(job: Job, error: str, error_type: str) -> dict:
    """Record (in status.json, best effort) and return a failure that happened outside `run_study`'s own
    isolation, e.g. a worker process or Ray actor that died while running the study."""
    now = utc_now()
    status = {"study_id": job.study.study_id, "task": job.task, "options": normalized(job.options),
              "state": "failed", "error": error, "error_type": error_type, "inputs": {}, "outputs": {},
              "metrics": {}, "timings": {"started": now, "finished": now, "seconds": 0.0}}
    try:
        job.out_dir.mkdir(parents=True, exist_ok=True)
        write_status(job.out_dir, status)
    except OSError:
        pass  # the summary still reports it
    return status


# -- running ------------------------------------------------------------------------------------------------
def run_study(job: Job, *, device: str, threads: int, cache: Any, progress: Progress | None = None) -> dict:
    """Run `job` and return its final status (also written to `D/<study_id>/status.json`).

    Every exception except cancellation is caught and recorded (`state: failed`): a bad study never stops the
    batch. `UserInputError`s keep their one-line message; other errors add the traceback to the status.
    """
    progress = progress or Progress.null()
    out_dir = job.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    status = {"study_id": job.study.study_id, "task": job.task, "options": normalized(job.options),
              "state": "running", "error": None, "error_type": None, "inputs": {}, "outputs": {}, "metrics": {},
              "timings": {"started": utc_now()},
              "worker": {"host": socket.gethostname(), "pid": os.getpid(), "device": device, "threads": threads}}
    write_status(out_dir, status)
    try:
        if job.study.problems:
            raise UserInputError("; ".join(job.study.problems), fix=f"correct line {job.study.row} of the manifest")
        status["inputs"] = {k: (fingerprint(v) if v else None) for k, v in input_paths(job).items()}
        hashed = time.perf_counter()
        status["timings"]["hash_seconds"] = round(hashed - start, 4)
        function = load_task_function(get_task(job.task))
        ctx = StudyContext(job.study.study_id, device, threads, progress, cache)
        result = function(dict(job.study.inputs), out_dir, dict(job.options), ctx) or {}
        status["timings"]["task_seconds"] = round(time.perf_counter() - hashed, 4)
        status["outputs"] = {str(k): str(v) for k, v in (result.get("outputs") or {}).items()}
        status["metrics"] = _plain(result.get("metrics") or {})
        status["timings"].update({str(k): round(float(v), 4) for k, v in (result.get("timings") or {}).items()})
        status["state"] = "done"
    except CancelledError:
        status.update(state="failed", error="cancelled", error_type="CancelledError")
        raise
    except UserInputError as exc:
        status.update(state="failed", error=str(exc), error_type=type(exc).__name__)
    except Exception as exc:  # noqa: BLE001 - isolation: any failure of one study is recorded, the batch goes on
        status.update(state="failed", error=f"{type(exc).__name__}: {exc}", error_type=type(exc).__name__,
                      traceback=traceback.format_exc(limit=20))
    finally:
        status["timings"]["finished"] = utc_now()
        status["timings"]["seconds"] = round(time.perf_counter() - start, 4)
        write_status(out_dir, status)
    return status


def _plain(metrics: dict) -> dict:
    """Metrics as JSON scalars (numpy numbers to Python numbers, anything else to a short string)."""
    plain = {}
    for key, value in metrics.items():
        if hasattr(value, "item") and getattr(value, "size", 1) == 1:
            value = value.item()
        if isinstance(value, bool) or value is None or isinstance(value, (int, float, str)):
            plain[str(key)] = value
        else:
            plain[str(key)] = str(value)[:200]
    return plain
