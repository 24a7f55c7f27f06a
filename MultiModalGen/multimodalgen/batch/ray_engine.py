"""Engine `ray`: studies run on Ray actors, on this machine or on a multi-node Ray cluster.

Each actor (`StudyWorker`) is one long-lived worker process holding one `WorkerState` (so a model is loaded once
per actor, not once per study); it reserves `threads` CPUs and, for a GPU task on a cluster with GPUs, one GPU
(Ray sets `CUDA_VISIBLE_DEVICES`, so the actor's device is "cuda"). Studies are handed to idle actors one at a
time (no deep queue on a slow node). The actor runs the same `run_study` as the local engine, so results are the
same. Inputs and the output folder are absolute paths: on a cluster they must be on a filesystem every node
sees at the same path (NFS, Lustre, a mounted bucket).

`address=None` starts a private local Ray instance (and stops it afterwards); an `address` ("auto",
"ray://head:10001", "head:6379") joins an existing cluster. If Ray is already initialised in this process
(e.g. by a notebook or a test), that session is used and left running.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any, Callable

from multimodalgen.batch.study import Job, failed_status, run_study
from multimodalgen.errors import CancelledError, UserInputError

_POLL_S = 0.25


class StudyWorker:
    """Body of the Ray actor: one device, a fixed thread count and a warm model cache for all its studies."""

    def __init__(self, device: str, threads: int, task: str):
        from multimodalgen.batch.local_engine import warm_up
        from multimodalgen.worker.state import WorkerState

        from multimodalgen.device import set_threads

        set_threads(threads)
        self.device, self.threads = device, threads
        self.cache = WorkerState(max_models=1)
        warm_up(task)

    def run(self, job: Job) -> dict:
        from multimodalgen.device import set_threads

        set_threads(self.threads)
        return run_study(job, device=self.device, threads=self.threads, cache=self.cache)

    def pid(self) -> int:
        return os.getpid()


def import_ray():
    """Import Ray or explain how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise UserInputError("--engine ray needs the 'ray' package", got=f"import failed ({exc})",
                             fix="pip install 'ray[default]' (or multimodalgen[ray]), or use --engine local") from exc
    return ray


def local_init_kwargs() -> dict[str, Any]:
    """`ray.init` arguments for a private local instance: quiet, no dashboard, and workers that can import this
    `multimodalgen` even when it is not pip-installed (e.g. bundled in the Slicer module folder)."""
    import multimodalgen

    package_parent = str(Path(multimodalgen.__file__).resolve().parents[1])
    python_path = os.pathsep.join(p for p in (package_parent, os.environ.get("PYTHONPATH")) if p)
    return {"logging_level": logging.ERROR, "log_to_driver": False, "include_dashboard": False,
            "runtime_env": {"env_vars": {"PYTHONPATH": python_path}}}


def connect(address: str | None, init_kwargs: dict | None = None) -> bool:
    """Initialise Ray if it is not already; returns True if this call started it (the caller then shuts it down)."""
    ray = import_ray()
    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {"address": address, "logging_level": logging.WARNING, "log_to_driver": False} \
        if address else local_init_kwargs()
    kwargs.update(init_kwargs or {})
    try:
        ray.init(**kwargs)
    except ConnectionError as exc:
        raise UserInputError(f"cannot connect to the Ray cluster at {address}", got=str(exc).splitlines()[0],
                             fix="start it with `ray start --head` or check --address") from exc
    return True


def plan_actors(resources: dict, *, n_jobs: int, workers: int | None, threads: int, use_gpu: bool,
                device: str) -> tuple[int, bool]:
    """(number of actors, whether each reserves a GPU) for the cluster's `resources` (`ray.cluster_resources()`).

    One actor per GPU for a GPU task on a cluster with GPUs, else one per `threads` CPUs; `workers` lowers that
    number (never above what the cluster can place, so no actor waits forever for resources).
    """
    gpus = int(resources.get("GPU", 0))
    if device.startswith("cuda") and gpus == 0:
        raise UserInputError("--device cuda was asked but the Ray cluster has no GPU", fix="use --device auto or "
                             "cpu, or add GPU nodes (ray start --num-gpus N)")
    gpu = use_gpu and device != "cpu" and gpus > 0
    capacity = gpus if gpu else max(1, int(resources.get("CPU", 1) // max(1, threads)))
    return max(1, min(n_jobs, workers or capacity, capacity)), gpu  # never more actors than can be placed


def run_ray(jobs: list[Job], on_result: Callable[[dict], None], *, workers: int | None, threads: int,
            use_gpu: bool, device: str = "auto", address: str | None = None, init_kwargs: dict | None = None,
            cancel_event: threading.Event | None = None) -> dict:
    """Run `jobs` on Ray actors, calling `on_result(status)` here as each study finishes.

    Returns engine facts for the summary: `{"ray_version", "actors", "gpu_per_actor", "dispatch_overhead_ms_mean",
    "connect_seconds", "actors_ready_seconds", "cluster_cpus", "cluster_gpus"}`.
    """
    ray = import_ray()
    cancel_event = cancel_event or threading.Event()
    t0 = time.perf_counter()
    started_here = connect(address, init_kwargs)
    actors: list[Any] = []
    try:
        resources = ray.cluster_resources()
        connected = time.perf_counter()
        # an actor must fit on one node: reserve at most the largest node's CPUs (threads stays the torch setting)
        node_cpus = max((n.get("Resources", {}).get("CPU", 0) for n in ray.nodes() if n.get("Alive")), default=1)
        cpus = max(1, min(threads, int(node_cpus)))
        n_actors, gpu = plan_actors(resources, n_jobs=len(jobs), workers=workers, threads=cpus,
                                    use_gpu=use_gpu, device=device)
        remote = ray.remote(num_cpus=cpus, num_gpus=1 if gpu else 0, max_restarts=0)(StudyWorker)
        actor_device = "cuda" if gpu else "cpu"

        def new_actor():
            actor = remote.remote(actor_device, threads, jobs[0].task)
            actors.append(actor)
            return actor

        idle = [new_actor() for _ in range(n_actors)]
        ray.get([actor.pid.remote() for actor in idle])
        ready = time.perf_counter()
        overheads = _dispatch(ray, jobs, on_result, idle, new_actor, cancel_event)
        return {"ray_version": ray.__version__, "actors": n_actors, "gpu_per_actor": int(gpu), "cpus_per_actor": cpus,
                "dispatch_overhead_ms_mean": round(1000 * sum(overheads) / max(1, len(overheads)), 2),
                "connect_seconds": round(connected - t0, 3), "actors_ready_seconds": round(ready - connected, 3),
                "cluster_cpus": resources.get("CPU", 0), "cluster_gpus": resources.get("GPU", 0)}
    finally:
        for actor in actors:
            ray.kill(actor)
        if started_here:
            ray.shutdown()


def _dispatch(ray, jobs: list[Job], on_result, idle: list, new_actor, cancel_event: threading.Event) -> list[float]:
    """Hand one study at a time to each idle actor until all are done.

    An actor that dies is replaced and its study retried once on the new actor; a second death fails the study.

    Returns, per finished study, Ray's own share of its round trip: (result received - submitted) - the study's
    time in `run_study` (seconds; serialisation, scheduling, result transfer and this loop's polling).
    """
    queue = collections.deque(jobs)
    running: dict[Any, tuple[Job, Any, float]] = {}
    overheads: list[float] = []
    retried: set[str] = set()
    while queue or running:
        while idle and queue:
            actor, job = idle.pop(), queue.popleft()
            running[actor.run.remote(job)] = (job, actor, time.perf_counter())
        done, _ = ray.wait(list(running), num_returns=1, timeout=_POLL_S)
        for ref in done:
            job, actor, submitted = running.pop(ref)
            try:
                status = ray.get(ref)
                overheads.append(time.perf_counter() - submitted - status["timings"]["seconds"])
                idle.append(actor)
            except ray.exceptions.RayActorError as exc:
                ray.kill(actor)
                idle.append(new_actor())
                if job.study.study_id not in retried:  # as the local engine: one more try, on a fresh actor
                    retried.add(job.study.study_id)
                    queue.appendleft(job)
                    continue
                status = failed_status(job, "the Ray worker died while running this study, twice (crash, out of "
                                            f"memory or lost node): {_first_line(exc)}", "WorkerDied")
            except ray.exceptions.RayError as exc:  # e.g. the study folder could not be written
                status = failed_status(job, _first_line(exc), type(exc).__name__)
                idle.append(actor)
            on_result(status)
        if cancel_event.is_set():
            raise CancelledError("batch cancelled")
    return overheads


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__
