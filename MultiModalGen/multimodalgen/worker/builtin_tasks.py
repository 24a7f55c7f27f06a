"""Built-in worker tasks: worker information, cache control, and small self-test tasks for protocol tests.

The ``selftest.*`` tasks exercise the protocol without torch or an engine: progress and cooperative cancel
(`sleep_task`), an uninterruptible stretch such as a long native call (``sleep_task`` with
``interruptible: false``, which only stopping the process can cancel), each error kind (`fail_task`), warm
state (`cache_task`) and file references in and out (`copy_task`).
"""

from __future__ import annotations

import os
import pathlib
import platform
import shutil
import sys
import time

from multimodalgen.errors import CancelledError, ResourceError, UserInputError
from multimodalgen.worker import protocol
from multimodalgen.worker.tasks import TaskContext, task_names


def info_task(params: dict, ctx: TaskContext) -> dict:
    """Versions, device availability (only if torch is already importable) and cache contents."""
    import multimodalgen

    out = {"version": multimodalgen.__version__, "protocol": protocol.PROTOCOL_VERSION, "pid": os.getpid(),
           "python": sys.version.split()[0], "platform": platform.platform(), "tasks": task_names(),
           "state": ctx.state.info(), "device": ctx.device}
    if params.get("torch", False):
        try:
            import torch

            out["torch"] = torch.__version__
            out["cuda_available"] = bool(torch.cuda.is_available())
            if out["cuda_available"]:
                out["cuda_device"] = torch.cuda.get_device_name(0)
                free, total = torch.cuda.mem_get_info()
                out["cuda_memory_gb"] = {"free": round(free / 2**30, 2), "total": round(total / 2**30, 2)}
        except ImportError as exc:
            out["torch"] = None
            out["torch_error"] = str(exc)
    return out


def clear_cache_task(params: dict, ctx: TaskContext) -> dict:
    """Drop every warm model and feature map of this worker."""
    before = ctx.state.info()
    ctx.state.clear()
    return {"dropped_models": len(before["models"]), "dropped_features": len(before["features"])}


def sleep_task(params: dict, ctx: TaskContext) -> dict:
    """Sleep `seconds` (default 1) in `steps` (default 10) progress updates.

    With ``interruptible: false`` the sleep is one uninterruptible call (no cancel checks), like a long torch
    kernel: only stopping the process cancels it.
    """
    seconds = float(params.get("seconds", 1.0))
    steps = max(1, int(params.get("steps", 10)))
    if seconds < 0 or seconds > 3600:
        raise UserInputError("selftest.sleep: seconds out of range", expected="0..3600", got=str(seconds))
    start = time.monotonic()
    if not params.get("interruptible", True):
        ctx.progress.check_cancelled()
        if ctx.progress.callback is not None:  # report without a cancel check: from here on only a kill stops it
            ctx.progress.callback("sleep", 0.0, "uninterruptible")
        time.sleep(seconds)
    else:
        for step in range(steps):
            ctx.progress.update("sleep", step / steps, f"step {step + 1}/{steps}")
            deadline = start + seconds * (step + 1) / steps
            while time.monotonic() < deadline:
                time.sleep(min(0.02, max(0.0, deadline - time.monotonic())))
                ctx.progress.check_cancelled()
    ctx.progress.update("sleep", 1.0, "done")
    return {"slept_s": round(time.monotonic() - start, 4), "pid": os.getpid()}


def fail_task(params: dict, ctx: TaskContext) -> dict:
    """Raise the error named by ``kind``: user_input, resource, cancelled, internal, or exit (kill the worker)."""
    kind = params.get("kind", "internal")
    if kind == "user_input":
        raise UserInputError("selftest failure", expected="nothing", got="a deliberate error", fix="none needed")
    if kind == "resource":
        raise ResourceError("selftest out of memory", expected="less memory", got="a deliberate error")
    if kind == "memory":
        raise MemoryError("selftest: cannot allocate")
    if kind == "cancelled":
        raise CancelledError("selftest cancel")
    if kind == "exit":
        sys.stderr.write("selftest: worker exiting on purpose\n")
        sys.stderr.flush()
        os._exit(int(params.get("code", 3)))
    raise RuntimeError("selftest internal failure")


def cache_task(params: dict, ctx: TaskContext) -> dict:
    """Compute (slowly, `seconds`) or reuse a value cached under ``image_id``; says whether it was warm."""
    image_id = str(params.get("image_id", "image"))
    seconds = float(params.get("seconds", 0.2))
    hit = f"selftest|{image_id}" in ctx.state.features

    def compute() -> dict:
        time.sleep(seconds)
        return {"computed_at": time.time()}

    value = ctx.state.get_features(image_id, "selftest", compute)
    return {"warm": hit, "computed_at": value["computed_at"], "pid": os.getpid()}


def copy_task(params: dict, ctx: TaskContext) -> dict:
    """Copy input file ``input`` into the request's workdir and report its size (file refs in and out)."""
    source = pathlib.Path(protocol.require_file(params, "input"))
    if not source.is_file():
        raise UserInputError("selftest.copy: input file not found", got=str(source))
    target = pathlib.Path(ctx.workdir) / ("copy_" + source.name)
    shutil.copyfile(source, target)
    ctx.progress.update("copy", 1.0, source.name)
    return {"output": protocol.file_ref(str(target)), "bytes": target.stat().st_size}
