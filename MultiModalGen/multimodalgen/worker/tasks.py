"""Task registry: task names the worker accepts, mapped lazily to backend functions.

A task function has the signature ``fn(params: dict, ctx: TaskContext) -> dict`` and returns JSON-serialisable
outputs (file outputs as ``{"file": path}`` references, see `protocol`). Targets are ``"module:function"``
strings imported only when the task first runs, so starting a worker never imports torch or an engine that
is not needed (and a missing engine is reported as ``missing_engine`` for that task only).
"""

from __future__ import annotations

import dataclasses
import importlib
import pathlib
from typing import Any, Callable

from multimodalgen.errors import UserInputError
from multimodalgen.progress import Progress
from multimodalgen.worker.state import WorkerState

TaskFunction = Callable[[dict, "TaskContext"], dict]

#: Built-in (non-verb) task names -> "module:function". Every verb of `multimodalgen.verbs` is a task too (run by
#: `verb_task.run_verb_task`).
TASKS: dict[str, str] = {
    "worker.info": "multimodalgen.worker.builtin_tasks:info_task",
    "worker.clear_cache": "multimodalgen.worker.builtin_tasks:clear_cache_task",
    "selftest.sleep": "multimodalgen.worker.builtin_tasks:sleep_task",
    "selftest.fail": "multimodalgen.worker.builtin_tasks:fail_task",
    "selftest.cache": "multimodalgen.worker.builtin_tasks:cache_task",
    "selftest.copy": "multimodalgen.worker.builtin_tasks:copy_task",
}

#: Tasks that only exist to test the protocol; the server can refuse them with `allow_selftest=False`.
SELFTEST_PREFIX = "selftest."


class MissingEngineError(UserInputError):
    """The engine behind a task is not part of this backend build (the worker reports `missing_engine`)."""


@dataclasses.dataclass
class TaskContext:
    """What a task gets besides its params.

    Attributes:
        request_id: the protocol id of this request.
        progress: report with `progress.update(stage, fraction, message)`; honours cancel.
        state: the worker's warm caches (models, encoder features).
        device: "auto", "cpu" or "cuda[:N]" (resolve with `multimodalgen.device.resolve_device`).
        workdir: a folder private to this request where outputs may be written.
    """

    request_id: str
    progress: Progress
    state: WorkerState
    device: str = "auto"
    workdir: pathlib.Path = dataclasses.field(default_factory=lambda: pathlib.Path("."))


_EXTRA: dict[str, TaskFunction] = {}


def register_task(name: str, fn: TaskFunction) -> None:
    """Add (or replace) a task at run time, e.g. from a plugin or a test."""
    if not name or not callable(fn):
        raise ValueError("register_task needs a name and a callable")
    _EXTRA[name] = fn


def task_names() -> list[str]:
    """Every task name this worker accepts (whether or not its engine is installed)."""
    from multimodalgen.verbs import verb_names

    return sorted(set(TASKS) | set(_EXTRA) | set(verb_names()))


def resolve(name: str) -> TaskFunction:
    """The function for task `name`, importing its module now. Raises KeyError for an unknown task and
    MissingEngineError when the module or its engine cannot be imported."""
    if name in _EXTRA:
        return _EXTRA[name]
    from multimodalgen.verbs import VERBS

    if name in VERBS:
        import functools

        run_verb_task = load_engine("multimodalgen.worker.verb_task", "run_verb_task", name)
        return functools.partial(run_verb_task, name)
    if name not in TASKS:
        raise KeyError(name)
    module_name, func_name = TASKS[name].split(":")
    return load_engine(module_name, func_name, name)


def load_engine(module_name: str, attribute: str, task: str) -> Any:
    """Import `module_name` and return `attribute`, raising MissingEngineError with a clear message if the
    engine (or one of its dependencies, e.g. torch) is not installed."""
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise MissingEngineError(f"task '{task}' needs {module_name}, which cannot be imported ({exc})",
                                 fix="install the backend's dependencies (torch, SimpleITK, nibabel)") from exc
    if not hasattr(module, attribute):
        raise MissingEngineError(f"task '{task}' needs {module_name}.{attribute}, which this backend lacks",
                                 fix="update MultiModalGen so the Slicer module and backend match")
    return getattr(module, attribute)
