"""Engine `local`: a process pool on this machine (or, with `workers=0`, this very process).

Each worker process keeps one `WorkerState` (warm models) for all the studies it runs, uses `threads` torch
threads and one device: with a GPU task on a CUDA machine there is one process per GPU (worker n gets
``cuda:{n % gpus}``), otherwise CPU processes. Processes are started with "spawn" (safe with torch and threads).

Failure isolation: a study's exceptions are caught inside `run_study`; a worker process that dies (segfault,
out-of-memory kill) breaks the pool: the studies that had started are retried one at a time in a single-process
pool (one that kills its worker there too is recorded as failed), and the queued ones continue in a fresh pool.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import sys
import threading
from concurrent.futures.process import BrokenProcessPool
from typing import Callable

from multimodalgen.device import set_threads
from multimodalgen.batch.study import Job, failed_status, read_status, run_study, utc_now
from multimodalgen.errors import CancelledError, UserInputError

#: Per-process worker state, set by `_init_worker` in pool processes (None in the parent).
_WORKER: dict | None = None
_POLL_S = 0.25


def _init_worker(counter, devices: list[str], threads: int, task: str) -> None:
    """Pool initializer: pick this process's device, set its thread count and import the task's code."""
    global _WORKER
    from multimodalgen.worker.state import WorkerState

    with counter.get_lock():
        index = counter.value
        counter.value += 1
    set_threads(threads)
    _WORKER = {"device": devices[index % len(devices)], "threads": threads, "cache": WorkerState(max_models=1)}
    warm_up(task)


def warm_up(task: str) -> None:
    """Import the task's code and engine now (worker start-up, not the first study's time).

    Import errors are ignored here: a missing engine is reported by each study, with its message.
    """
    import importlib

    from multimodalgen.batch.tasks import get_task
    from multimodalgen.batch.verb_study import load_task_function

    spec = get_task(task)
    for module in ("SimpleITK", *spec.preload):  # every task reads images through SimpleITK
        try:
            importlib.import_module(module)
        except Exception:  # noqa: BLE001
            pass
    try:
        load_task_function(spec)
    except Exception:  # noqa: BLE001
        pass


def _run_in_worker(job: Job) -> dict:
    state = _WORKER or {"device": "cpu", "threads": 1, "cache": None}
    set_threads(state["threads"])  # cheap; re-applied in case a task changed it
    return run_study(job, device=state["device"], threads=state["threads"], cache=state["cache"])


def run_local(jobs: list[Job], on_result: Callable[[dict], None], *, workers: int, threads: int,
              devices: list[str], cancel_event: threading.Event | None = None) -> None:
    """Run `jobs`, calling `on_result(status)` in this thread as each study finishes (in completion order).

    Args:
        workers: processes (0 = run in this process, one study at a time; handy in Slicer's console).
        threads: torch threads per study.
        devices: device per worker, round-robin ("cpu", or "cuda:0", "cuda:1", ...).
        cancel_event: when set, queued studies are dropped, running ones are abandoned and CancelledError raised.
    """
    cancel_event = cancel_event or threading.Event()
    if workers <= 0:
        _run_inline(jobs, on_result, threads=threads, device=devices[0], cancel_event=cancel_event)
        return
    remaining = jobs
    while remaining:
        since = utc_now()
        lost = _run_pool(remaining, on_result, workers=workers, threads=threads, devices=devices,
                         cancel_event=cancel_event)
        # A dead worker breaks the whole pool. Studies that had started (status "running" since this round began)
        # are suspects: each is retried alone; studies still queued go to a fresh pool.
        started = [job for job in lost if _started_since(job, since)] or lost
        for job in started:
            if _run_pool([job], on_result, workers=1, threads=threads, devices=devices, cancel_event=cancel_event):
                on_result(failed_status(job, "the worker process died while running this study, twice (crash or "
                                             "out of memory); try it with fewer threads or a smaller input",
                                        "WorkerDied"))
        remaining = [job for job in lost if job not in started]


def _started_since(job: Job, since: str) -> bool:
    status = read_status(job.out_dir) or {}
    return status.get("state") == "running" and (status.get("timings") or {}).get("started", "") >= since


def _run_inline(jobs: list[Job], on_result, *, threads: int, device: str, cancel_event: threading.Event) -> None:
    from multimodalgen.progress import Progress
    from multimodalgen.worker.state import WorkerState

    cache = WorkerState(max_models=1)
    warm_up(jobs[0].task)
    torch = sys.modules.get("torch")
    previous = torch.get_num_threads() if torch else None
    try:
        if torch:  # the caller's setting (e.g. Slicer's) is restored afterwards
            torch.set_num_threads(threads)
        for job in jobs:
            if cancel_event.is_set():
                raise CancelledError("batch cancelled")
            on_result(run_study(job, device=device, threads=threads, cache=cache,
                                progress=Progress(cancel_event=cancel_event)))
    finally:
        if torch:
            torch.set_num_threads(previous)


def worker_python(executable: str | None = None) -> str | None:
    """The Python interpreter for worker processes when `executable` (default `sys.executable`) is not one.

    Inside 3D Slicer the running program is the Slicer application, whose folder holds `PythonSlicer` (Slicer's
    Python with its environment): spawning the application itself would open another Slicer. Returns None when
    the default is already a Python interpreter (or nothing better is found).
    """
    from pathlib import Path

    current = Path(executable or sys.executable)
    if "python" in current.name.lower():
        return None
    for folder in (current.parent, current.parent / "bin"):  # Slicer-X/bin/SlicerApp-real or Slicer-X/Slicer
        for name in ("PythonSlicer", "PythonSlicer.exe"):
            if (folder / name).is_file():
                return str(folder / name)
    return None


def _run_pool(jobs: list[Job], on_result, *, workers: int, threads: int, devices: list[str],
              cancel_event: threading.Event) -> list[Job]:
    """Run jobs in one pool; returns the jobs lost to a broken pool (a worker process died)."""
    context = multiprocessing.get_context("spawn")
    python = worker_python()
    if python:
        context.set_executable(python)
    counter = context.Value("i", 0)
    pool = cf.ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_init_worker,
                                  initargs=(counter, devices, threads, jobs[0].task))
    lost: list[Job] = []
    try:
        try:
            pool.submit(os.getpid).result()  # the workers can start (spawn re-imports the caller's main module)
        except BrokenProcessPool as exc:
            raise UserInputError(
                "the local engine's worker processes could not start",
                got="they exited while starting (a script without an `if __name__ == \"__main__\":` guard, or code "
                    "read from stdin, cannot be re-imported by a new process)",
                fix="put the call under `if __name__ == \"__main__\":` in a script file, or use --workers 0 "
                    "(workers=0) to run in this process") from exc
        futures = {pool.submit(_run_in_worker, job): job for job in jobs}
        pending = set(futures)
        while pending:
            done, pending = cf.wait(pending, timeout=_POLL_S, return_when=cf.FIRST_COMPLETED)
            for future in done:
                try:
                    status = future.result()
                except BrokenProcessPool:
                    lost.append(futures[future])
                    continue
                except Exception as exc:  # noqa: BLE001 - e.g. the study folder could not be written
                    status = failed_status(futures[future], f"{type(exc).__name__}: {exc}", type(exc).__name__)
                on_result(status)
            if cancel_event.is_set():
                raise CancelledError("batch cancelled")
    except KeyboardInterrupt:
        cancel_event.set()
        raise
    finally:
        abandon = cancel_event.is_set()
        pool.shutdown(wait=not abandon, cancel_futures=True)
        if abandon:
            for process in list(getattr(pool, "_processes", {}).values()):
                process.terminate()
    order = {id(job): i for i, job in enumerate(jobs)}
    return sorted(lost, key=lambda job: order[id(job)])
