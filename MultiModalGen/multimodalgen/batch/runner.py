"""`run`: process a cohort manifest with one task on the local or Ray engine (the batch's Python API).

From Slicer's Python console or a script::

    from multimodalgen.batch import run
    summary = run("/data/STUDIES.csv", "register", "/data/out", engine="local", options={"preset": "fast"})
    print(summary.done, summary.failed, summary.failed_ids)

Flow: validate task options and manifest -> decide which studies are up to date (skipped unless `force`) ->
studies with manifest problems (missing files) are recorded as failed here -> the engine runs the rest, each study
isolated -> progress with ETA after every study -> `D/summary.csv` for the whole cohort -> `BatchSummary`.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Callable

from multimodalgen.batch.manifest import read_manifest
from multimodalgen.batch.study import Job, read_status, run_study, up_to_date
from multimodalgen.batch.summary import SUMMARY_FILE, BatchSummary, summary_row, write_summary_csv
from multimodalgen.batch.tasks import TaskSpec, get_task, validate_options
from multimodalgen.errors import UserInputError
from multimodalgen.progress import Progress

ENGINES = ("local", "ray")


def available_cores() -> int:
    """CPU cores this process may use (affinity-aware)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def local_plan(spec: TaskSpec, device: str, workers: int | None, threads: int) -> tuple[int, list[str]]:
    """(worker processes, device per worker) for the local engine.

    A GPU task with `device` auto/cuda on a CUDA machine gets one process per GPU (or `workers`, spread over the
    GPUs); everything else gets `cores // threads` CPU processes (at least 1) unless `workers` is given.
    """
    if spec.uses_gpu and device != "cpu":
        from multimodalgen.device import resolve_device

        resolved = resolve_device(device)  # raises a clear error for --device cuda without a GPU
        if resolved.type == "cuda":
            import torch

            gpus = [f"cuda:{i}" for i in range(torch.cuda.device_count())] if resolved.index is None \
                else [str(resolved)]
            return (workers if workers is not None else len(gpus)), gpus
    return (workers if workers is not None else max(1, available_cores() // threads)), ["cpu"]


class _Tracker:
    """Counts finished studies and reports `batch` progress with an ETA after each one."""

    def __init__(self, progress: Progress, total: int, on_study: Callable[[dict], None] | None):
        self.progress, self.total, self.on_study = progress, total, on_study
        self.finished = self.failed = 0
        self.start = time.monotonic()
        self.statuses: dict[str, dict] = {}
        self.engine_start: float | None = None
        self.startup: float | None = None

    def __call__(self, status: dict) -> None:
        if self.engine_start is not None and self.startup is None:  # engine start-up, seen from here
            seconds = (status.get("timings") or {}).get("seconds") or 0.0
            self.startup = max(0.0, time.monotonic() - self.engine_start - seconds)
        self.statuses[status["study_id"]] = status
        self.finished += 1
        self.failed += status.get("state") != "done"
        if self.on_study is not None:
            self.on_study(status)
        elapsed = time.monotonic() - self.start
        eta = elapsed / self.finished * (self.total - self.finished)
        message = f"{self.finished}/{self.total} {self.failed} failed ETA {_clock(eta)}"
        self.progress.update("batch", self.finished / max(1, self.total), message)


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def run(manifest: str | os.PathLike, task: str, out_dir: str | os.PathLike, *, engine: str = "local",
        options: dict | None = None, workers: int | None = None, threads: int | None = None, device: str = "auto",
        address: str | None = None, force: bool = False, progress: Progress | None = None,
        on_study: Callable[[dict], None] | None = None, ray_init: dict | None = None) -> BatchSummary:
    """Run `task` on every study of `manifest`, writing `out_dir/<study_id>/` and `out_dir/summary.csv`.

    Args:
        manifest: STUDIES.csv (see `multimodalgen.batch.manifest`).
        task: "resample", "register", "segment" or "fewshot-apply".
        out_dir: batch output folder D (created).
        engine: "local" (process pool on this machine) or "ray".
        options: task options, e.g. {"spacing": 1.0} or {"preset": "fast"} (see `tasks.TASKS`).
        workers: local processes (0 = in this process) or Ray actors; default sized to the machine / cluster.
        threads: CPU threads per study (default: the task's default, capped at this machine's cores).
        device: "auto", "cpu" or "cuda[:N]" for GPU tasks.
        address: Ray cluster address (engine "ray"); None starts a local Ray instance.
        force: redo studies that are already done.
        progress: overall progress (stage "batch", fraction of studies, message with the ETA); its cancel flag
            stops the batch (queued studies are not started).
        on_study: called with each study's final status as it finishes (in this thread).
        ray_init: extra `ray.init` keyword arguments (e.g. {"num_cpus": 2}) when a local Ray instance is started.

    Returns:
        BatchSummary. Failed studies do not raise; whole-batch problems (bad manifest, unknown task or option,
        Ray not installed) raise UserInputError before anything runs.
    """
    spec = get_task(task)
    options = validate_options(spec, options)
    if engine not in ENGINES:
        raise UserInputError("unknown batch engine", expected=" or ".join(ENGINES), got=repr(engine))
    if engine == "local" and address:
        raise UserInputError("--address only applies to --engine ray", fix="drop --address or add --engine ray")
    if engine == "ray":
        from multimodalgen.batch.ray_engine import import_ray

        import_ray()  # a clear error now if Ray is not installed
    if workers is not None and workers < 0 or threads is not None and threads < 1:
        raise UserInputError("invalid --workers/--threads", expected="workers >= 0 and threads >= 1",
                             got=f"workers={workers}, threads={threads}")
    parsed = read_manifest(manifest, spec)
    out_root = Path(os.path.expanduser(str(out_dir))).resolve()
    try:
        out_root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserInputError("cannot create the output folder", got=f"{out_root} ({exc.strerror})",
                             fix="choose a writable --out-dir") from exc
    progress = progress or Progress.null()
    threads = threads or min(spec.default_threads, available_cores())
    jobs = [Job(study, task, options, str(out_root)) for study in parsed.studies]
    skipped = set() if force else {job.study.study_id for job in jobs if up_to_date(job)[0]}
    todo = [job for job in jobs if job.study.study_id not in skipped]
    tracker = _Tracker(progress, len(todo), on_study)
    progress.update("batch", 0.0, f"{len(todo)} to run, {len(skipped)} up to date")
    start = time.perf_counter()
    runnable = [job for job in todo if not job.study.problems]
    engine_info: dict = {"threads_per_study": threads}
    try:
        for job in [job for job in todo if job.study.problems]:  # missing files: recorded here, not dispatched
            tracker(run_study(job, device="cpu", threads=1, cache=None))
        if runnable:
            tracker.engine_start = time.monotonic()
            engine_info.update(_run_engine(engine, spec, runnable, tracker, workers=workers, threads=threads,
                                           device=device, address=address, ray_init=ray_init,
                                           cancel_event=progress.cancel_event))
            engine_info["startup_seconds"] = round(tracker.startup or 0.0, 3)
    finally:  # also after a cancel: the CSV then shows what finished
        summary = _summarise(parsed.path, spec, engine, out_root, jobs, skipped, tracker,
                             time.perf_counter() - start, engine_info)
    if not todo:  # nothing ran, so no study reported 100 %
        progress.update("batch", 1.0, f"{summary.done}/{summary.total} already done")
    return summary


def _run_engine(engine: str, spec: TaskSpec, jobs: list[Job], tracker: _Tracker, *, workers, threads, device,
                address, ray_init, cancel_event: threading.Event) -> dict:
    if engine == "ray":
        from multimodalgen.batch.ray_engine import run_ray

        info = run_ray(jobs, tracker, workers=workers, threads=threads, use_gpu=spec.uses_gpu, device=device,
                       address=address, init_kwargs=ray_init, cancel_event=cancel_event)
        return {"engine": "ray", **info}
    from multimodalgen.batch.local_engine import run_local

    n_workers, devices = local_plan(spec, device, workers, threads)
    n_workers = min(n_workers, len(jobs))
    run_local(jobs, tracker, workers=n_workers, threads=threads, devices=devices, cancel_event=cancel_event)
    return {"engine": "local", "workers": n_workers, "devices": devices}


def _summarise(manifest: Path, spec: TaskSpec, engine: str, out_root: Path, jobs: list[Job], skipped: set[str],
               tracker: _Tracker, wall: float, engine_info: dict) -> BatchSummary:
    statuses, rows = [], []
    for job in jobs:
        sid = job.study.study_id
        status = tracker.statuses.get(sid) or read_status(job.out_dir) or {"study_id": sid, "state": "not run"}
        this_run = "ran" if sid in tracker.statuses else "skipped" if sid in skipped else "not run"
        statuses.append(status)
        rows.append(summary_row(status, this_run))
    csv_path = write_summary_csv(rows, out_root / SUMMARY_FILE)
    failed = {s["study_id"]: s.get("error") or s.get("state") for s in statuses if s.get("state") != "done"}
    ran = len(tracker.statuses)
    return BatchSummary(task=spec.name, engine=engine, manifest=str(manifest), out_dir=str(out_root),
                        total=len(jobs), ran=ran, skipped=len(skipped), done=len(jobs) - len(failed),
                        failed=len(failed), failed_ids=failed, wall_seconds=round(wall, 3),
                        studies_per_minute=round(60.0 * ran / wall, 2) if wall > 0 and ran else 0.0,
                        summary_csv=str(csv_path), engine_info=engine_info, statuses=statuses)
