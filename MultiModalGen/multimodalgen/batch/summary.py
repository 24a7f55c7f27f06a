"""The batch summary: a `BatchSummary` returned by `run` and `D/summary.csv`, one row per manifest study.

CSV columns: `study_id, state, this_run, error, seconds, task_seconds, hash_seconds, started, finished, host,
device`, then `seconds_<stage>` for the task's own timings, the task's metrics under their names, and
`output_<name>` for each output file (relative to D). `this_run` is "ran", "skipped" (up to date) or "not run"
(e.g. cancelled before its turn). The CSV covers the whole cohort, including studies finished by earlier runs.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import os
from pathlib import Path
from typing import Any

from multimodalgen.io import atomic_path

SUMMARY_FILE = "summary.csv"
_FIXED = ["study_id", "state", "this_run", "error", "seconds", "task_seconds", "hash_seconds", "started",
          "finished", "host", "device"]
_STANDARD_TIMINGS = {"started", "finished", "seconds", "task_seconds", "hash_seconds"}


@dataclasses.dataclass
class BatchSummary:
    """What a batch did.

    Attributes:
        task, engine, manifest, out_dir: the request.
        total: studies in the manifest; ran / skipped: this run; done / failed: states after this run (whole cohort).
        failed_ids: ids of the failed studies with their one-line errors.
        wall_seconds: this run's wall time; studies_per_minute: studies run per minute of wall time.
        summary_csv: path of `D/summary.csv`.
        engine_info: engine facts: workers, threads, devices (Ray: actors, connect and actor start times, Ray's
            dispatch overhead per study), and `startup_seconds`: time from starting the engine to its first
            result, less that study's own time (process spawn and imports; Ray: connecting and starting actors).
        statuses: every study's status dict, in manifest order.
    """

    task: str
    engine: str
    manifest: str
    out_dir: str
    total: int
    ran: int
    skipped: int
    done: int
    failed: int
    failed_ids: dict[str, str]
    wall_seconds: float
    studies_per_minute: float
    summary_csv: str
    engine_info: dict[str, Any]
    statuses: list[dict] = dataclasses.field(repr=False, default_factory=list)

    def to_dict(self, with_statuses: bool = False) -> dict[str, Any]:
        """JSON-serialisable dict (statuses left out unless asked)."""
        data = dataclasses.asdict(self)
        if not with_statuses:
            data.pop("statuses")
        return data


def summary_row(status: dict, this_run: str) -> dict[str, Any]:
    """One CSV row from a study status."""
    timings = status.get("timings") or {}
    worker = status.get("worker") or {}
    row: dict[str, Any] = {
        "study_id": status.get("study_id"), "state": status.get("state"), "this_run": this_run,
        "error": (status.get("error") or "").replace("\n", " "), "seconds": timings.get("seconds"),
        "task_seconds": timings.get("task_seconds"), "hash_seconds": timings.get("hash_seconds"),
        "started": timings.get("started"), "finished": timings.get("finished"), "host": worker.get("host"),
        "device": worker.get("device"),
    }
    for stage, value in timings.items():
        if stage not in _STANDARD_TIMINGS:
            row[f"seconds_{stage}"] = value
    for name, value in (status.get("metrics") or {}).items():
        row[name if name not in row else f"metric_{name}"] = value
    for name, file in (status.get("outputs") or {}).items():
        row[f"output_{name}"] = os.path.join(str(status.get("study_id")), file)
    return row


def write_summary_csv(rows: list[dict[str, Any]], path: str | os.PathLike) -> Path:
    """Write rows (union of their columns: the fixed ones first, then in order of appearance) atomically."""
    columns = list(_FIXED)
    for row in rows:
        columns.extend(c for c in row if c not in columns)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, restval="", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(buffer.getvalue(), encoding="utf-8")
    return path
