"""The worker's door to the verb registry: a request for verb `name` runs `multimodalgen.verbs.run_verb`.

Params are the verb's parameters (`multimodalgen.verbs.registry.VERBS`) with every file given as a
``{"file": path}`` reference (a plain string where a file is expected is refused, so a server client can only name
files it uploaded), plus the door keys ``output_dir`` (folder for the outputs; default the request's folder),
``device`` and ``output_suffix`` (".nii" / ".nii.gz" / ".nrrd" for a file output: uncompressed is faster on one
machine, e.g. the Slicer few-shot effect per stroke). The verb's output goes to ``output_dir / verb.default_output``; `finetune` writes folder
``adapters_dir / adapter_name`` instead. The reply holds the result's metrics, its files as file references
(a folder output, i.e. an adapter, also zipped for remote clients as ``<name>_zip``) and ``timings``.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from multimodalgen.errors import UserInputError
from multimodalgen.verbs.registry import FILE_KINDS, file_values, get_verb, run_verb
from multimodalgen.verbs.result import Result, RunContext
from multimodalgen.worker import protocol
from multimodalgen.worker.tasks import TaskContext

DOOR_KEYS = ("output_dir", "device", "output_suffix")
OUTPUT_SUFFIXES = (".nii.gz", ".nii", ".nrrd")


def local_params(verb, params: dict[str, Any]) -> dict[str, Any]:
    """The verb's params with file references replaced by local paths; UserInputError for a plain string (or any
    other value) where a file reference is expected."""

    def unwrap(name: str, value: Any) -> Any:
        if protocol.is_file_ref(value) and "file" in value:
            return value["file"]
        if isinstance(value, dict):
            return {k: unwrap(name, v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [unwrap(name, v) for v in value]
        raise UserInputError(f"parameter '{name}' must be a file reference", expected='{"file": path} (local) or '
                             '{"upload": id} (server)', got=repr(value)[:60], fix="upload the file and pass its id")

    out = {}
    for key, value in params.items():
        p = verb.param(key)
        if p is None or p.kind not in FILE_KINDS or value is None:
            out[key] = value
        elif p.kind == "cases" and isinstance(value, list):
            out[key] = [dict(case, **unwrap(key, file_values(p, [case])[0])) if isinstance(case, dict)
                        else unwrap(key, case) for case in value]
        else:
            out[key] = unwrap(key, value)
    return out


def worker_outputs(result: Result) -> dict[str, Any]:
    """The reply: metrics, then each output as a file reference (folders zipped beside them), then timings."""
    reply: dict[str, Any] = dict(result.metrics)
    for name, path in result.outputs.items():
        path = Path(path)
        if path.is_dir():
            reply[name] = str(path)
            archive = shutil.make_archive(str(path.parent / f".{path.name}"), "zip", root_dir=str(path))
            reply[f"{name}_zip"] = protocol.file_ref(archive)
        else:
            reply[name] = protocol.file_ref(str(path))
    reply["timings"] = {k: round(float(v), 4) for k, v in result.timings.items()}
    return reply


def run_verb_task(name: str, params: dict, ctx: TaskContext) -> dict:
    """Run verb `name` for a worker request (see the module docstring)."""
    verb = get_verb(name)
    params_in = dict(params)
    params = {k: v for k, v in params_in.items() if k not in DOOR_KEYS}
    folder = Path(ctx.workdir)
    adapters_dir = params.pop("adapters_dir", None)  # the server always sets it (clients never choose folders)
    if verb.name == "finetune":
        adapter = str(params.pop("adapter_name", None) or verb.default_output)
        folder = Path(adapters_dir or folder)
        out = folder / adapter
    else:
        out = folder / _with_suffix(verb.default_output, params_in.get("output_suffix"))
    result = run_verb(verb.name, local_params(verb, params), out, RunContext(ctx.device, ctx.progress, ctx.state))
    return worker_outputs(result)


def _with_suffix(name: str, suffix: str | None) -> str:
    """`name` (e.g. segmentation.nii.gz) with the image suffix `suffix` instead (None: unchanged)."""
    if suffix is None:
        return name
    if suffix not in OUTPUT_SUFFIXES:
        raise UserInputError("unsupported output_suffix", expected=", ".join(OUTPUT_SUFFIXES), got=str(suffix))
    stem = next((name[:-len(s)] for s in OUTPUT_SUFFIXES if name.endswith(s)), None)
    if stem is None:
        raise UserInputError("output_suffix applies to image outputs only", got=name)
    return stem + suffix
