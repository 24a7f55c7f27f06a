"""Batch's door to the verb registry: one manifest row -> the verb's parameters -> `run_verb` -> the study result.

Mapping (one rule per column kind, see `tasks.COLUMN_KINDS`): a column named `label` is the study's ground truth
(`reference_label`: the verb adds Dice to its metrics); with "fixed" columns every other column is the parameter
of the same name; with "modalities" columns the others are `images` {column: path} (few-shot: the channel list
in manifest order, a column named `image` having no modality); with "any", every column is an image. Task options
are the verb's parameters of the same name (`fewshot_task` is the few-shot verb's `apply_task`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from multimodalgen.batch.tasks import StudyContext, TaskSpec
from multimodalgen.verbs.registry import get_verb, run_verb
from multimodalgen.verbs.result import RunContext

_OPTION_PARAMS = {"fewshot_task": "apply_task"}


def study_params(spec: TaskSpec, inputs: dict[str, str | None], options: dict) -> dict[str, Any]:
    """The verb's parameters for one study (see the module docstring)."""
    filled = {name: path for name, path in inputs.items() if path}
    params: dict[str, Any] = {_OPTION_PARAMS.get(k, k): v for k, v in options.items()}
    if spec.columns != "any" and "label" in filled:
        params["reference_label"] = filled.pop("label")
    if spec.columns == "fixed":
        params.update(filled)
    elif spec.verb == "fewshot":
        params["images"] = list(filled.values())
        params["modalities"] = [None if name == "image" else name for name in filled]
    else:
        params["images"] = filled
    return params


def flat_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    """One level of nesting flattened (``{"jacobian": {"min": m}}`` -> ``jacobian_min``; ``{"dice": {"dice_1": d}}``
    -> ``dice_1``); lists become comma-joined strings."""
    flat: dict[str, Any] = {}
    for key, value in metrics.items():
        if isinstance(value, dict):
            for sub, item in value.items():
                flat[sub if str(sub).startswith(key) else f"{key}_{sub}"] = item
        elif isinstance(value, (list, tuple)):
            flat[key] = ",".join(str(v) for v in value) if all(not isinstance(v, (dict, list)) for v in value) \
                else str(value)[:200]
        else:
            flat[key] = value
    return flat


def run_study_verb(spec: TaskSpec, inputs: dict[str, str | None], out_dir: Path, options: dict,
                   ctx: StudyContext) -> dict:
    """Run `spec`'s verb on one study; outputs are relative to `out_dir` (the study's folder)."""
    verb = get_verb(spec.verb)
    out = Path(out_dir) / verb.default_output if verb.default_output != "." else Path(out_dir)
    result = run_verb(verb.name, study_params(spec, inputs, options), out,
                      RunContext(ctx.device, ctx.progress, ctx.cache))
    return {"outputs": result.relative_outputs(Path(out_dir)), "metrics": flat_metrics(result.metrics),
            "timings": dict(result.timings)}


def load_task_function(spec: TaskSpec):
    """The study function of `spec`: ``fn(inputs, out_dir, options, ctx) -> {"outputs", "metrics", "timings"}``."""
    import functools

    return functools.partial(run_study_verb, spec)
