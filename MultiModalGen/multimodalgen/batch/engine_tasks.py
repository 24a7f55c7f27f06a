"""Batch tasks backed by the heavy engines: `register`, `segment`, `fewshot-apply`.

Each adapter turns one manifest row into a call of the engine's file-level function, with the study's device and
progress, and turns the engine's result dict into the batch result ``{"outputs", "metrics", "timings"}``. Engines
are imported here, in the worker, when the first study of that task runs; a missing engine (or an engine without
the expected function) fails every study of that task with a `MissingEngineError` naming what is missing.
"""

from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import Any, Callable

from multimodalgen.batch.tasks import StudyContext


def _engine(module: str, attribute: str, task: str) -> Callable[..., Any]:
    from multimodalgen.worker.tasks import load_engine

    return load_engine(module, attribute, task)


def call_with_supported(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call `function`, dropping keyword arguments it does not accept and those that are None.

    Lets the batch pass optional inputs (e.g. `fixed_mask`) to engines whose signature may not have them yet,
    without ever passing a value the user did not give.
    """
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    parameters = inspect.signature(function).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        kwargs = {k: v for k, v in kwargs.items() if k in parameters}
    return function(*args, **kwargs)


def split_result(result: Any, out_dir: Path) -> dict:
    """Normalise an engine's result (report) dict to ``{"outputs", "metrics", "timings"}``.

    Outputs: the result's "outputs" (a dict name -> file, or a list of file names, named by their stem), else its
    string values; only files that exist inside `out_dir` are kept (relative names), plus report.json if written.
    Metrics: the result's "metrics" plus its top-level numbers and the numbers one level down (``jacobian_min``).
    Timings: its "timings" or "timings_s" numbers.
    """
    if not isinstance(result, dict):
        return {"outputs": {}, "metrics": {}, "timings": {}}
    listed = result.get("outputs")
    if isinstance(listed, dict):
        items = list(listed.items())
    elif isinstance(listed, (list, tuple)):
        items = [(Path(str(name)).name.split(".")[0], name) for name in listed]
    else:
        items = [(k, v) for k, v in result.items() if isinstance(v, (str, os.PathLike))]
    root = out_dir.resolve()
    outputs: dict[str, str] = {}
    for key, value in items:
        if isinstance(value, (str, os.PathLike)) and (root / value).is_file():
            path = (root / value).resolve()
            if path.is_relative_to(root):
                outputs[str(key)] = str(path.relative_to(root))
    if (root / "report.json").is_file():
        outputs.setdefault("report", "report.json")
    skip = {"outputs", "metrics", "timings", "timings_s", "inputs", "config"}
    metrics: dict[str, Any] = dict(result.get("metrics") or {})
    for key, value in result.items():
        if key in skip:
            continue
        if _is_number(value):
            metrics.setdefault(str(key), value)
        elif isinstance(value, dict):
            for sub, number in value.items():
                if _is_number(number):
                    metrics.setdefault(f"{key}_{sub}", number)
    timings = result.get("timings") or result.get("timings_s") or {}
    timings = {str(k): float(v) for k, v in timings.items() if _is_number(v)}
    return {"outputs": outputs, "metrics": metrics, "timings": timings}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def dice_metrics(predicted: str | os.PathLike, reference: str | os.PathLike) -> dict[str, float]:
    """Dice of each label of `reference` (and of the prediction) and their mean: ``{"dice_<l>", "dice_mean"}``.

    The prediction is resampled (nearest-neighbour) onto the reference grid when the grids differ.
    """
    import numpy as np

    from multimodalgen.io import read_label
    from multimodalgen.resample import resample_like
    from multimodalgen.volume import same_grid

    pred, ref = read_label(predicted), read_label(reference)
    if not same_grid(pred, ref, tolerance=1e-2):
        pred = resample_like(pred, ref, "nearest")
    labels = sorted((set(np.unique(ref.array).tolist()) | set(np.unique(pred.array).tolist())) - {0})
    scores = {}
    for label in labels:
        a, b = pred.array == label, ref.array == label
        denominator = int(a.sum()) + int(b.sum())
        scores[f"dice_{label}"] = round(2.0 * int((a & b).sum()) / denominator, 6) if denominator else 1.0
    if scores:
        scores["dice_mean"] = round(float(np.mean(list(scores.values()))), 6)
    return scores


def register_task(inputs: dict[str, str | None], out_dir: Path, options: dict, ctx: StudyContext) -> dict:
    """Register `moving` to `fixed` with `multimodalgen.registration.register_files` (outputs in `out_dir`)."""
    register_files = _engine("multimodalgen.registration", "register_files", "register")
    result = call_with_supported(register_files, inputs["fixed"], inputs["moving"], str(out_dir),
                                 moving_labels=inputs.get("moving_labels"), fixed_labels=inputs.get("fixed_labels"),
                                 fixed_mask=inputs.get("fixed_mask"), mode=options.get("mode"),
                                 preset=options.get("preset"), device=ctx.device, progress=ctx.progress)
    batch_result = split_result(result, out_dir)
    warped_labels = batch_result["outputs"].get("warped_labels")
    if inputs.get("fixed_labels") and warped_labels:
        batch_result["metrics"].update(dice_metrics(out_dir / warped_labels, inputs["fixed_labels"]))
    return batch_result


def _image_paths(inputs: dict[str, str | None]) -> dict[str, str]:
    """The study's image columns (every filled column except the reference `label`), in manifest order."""
    return {name: path for name, path in inputs.items() if path and name != "label"}


def _write_labels_with_dice(labels, out_dir: Path, reference: str | None) -> tuple[dict, dict]:
    """Write `labels.nii.gz` in `out_dir`; returns (outputs, metrics) with Dice against `reference` if given."""
    from multimodalgen.io import write_label

    write_label(labels, out_dir / "labels.nii.gz")
    metrics = dice_metrics(out_dir / "labels.nii.gz", reference) if reference else {}
    return {"labels": "labels.nii.gz"}, metrics


def segment_task(inputs: dict[str, str | None], out_dir: Path, options: dict, ctx: StudyContext) -> dict:
    """Personalized multimodal segmentation of the study's modalities (any subset) with an optional adapter.

    The model (base + adapter) is loaded once per worker (`ctx.cache`) and reused for every study it runs.
    Writes `labels.nii.gz` (on the grid of the first modality in the model's order).
    """
    import time

    from multimodalgen.io import read_volume

    segment_volumes = _engine("multimodalgen.personalized.inference", "segment_volumes", "segment")
    load_with_adapter = _engine("multimodalgen.personalized.inference", "load_with_adapter", "segment")
    adapter, base_model = options.get("adapter"), options.get("base_model")
    t0 = time.perf_counter()
    model, info = ctx.cache.get_model(f"personalized:{base_model}:{adapter}:{ctx.device}",
                                      lambda: load_with_adapter(adapter, base_model, ctx.device))
    t1 = time.perf_counter()
    images = {name: read_volume(path, name) for name, path in _image_paths(inputs).items()}
    t2 = time.perf_counter()
    labels = segment_volumes(images, adapter, ctx.device, ctx.progress, model=model,
                             ttp_steps=int(options.get("ttp_steps", 0)))
    t3 = time.perf_counter()
    outputs, metrics = _write_labels_with_dice(labels, out_dir, inputs.get("label"))
    metrics.update(modalities="+".join(images), adapter=info.get("adapter") or "none")
    return {"outputs": outputs, "metrics": metrics,
            "timings": {"load_model": t1 - t0, "read": t2 - t1, "segment": t3 - t2,
                        "write": time.perf_counter() - t3}}


def fewshot_apply_task(inputs: dict[str, str | None], out_dir: Path, options: dict, ctx: StudyContext) -> dict:
    """Apply a saved few-shot task (folder written by `fewshot --save-task`) to the study's images.

    Image columns are passed in manifest order (as the task was saved); a column named `image` has no modality.
    The task is loaded once per worker (`ctx.cache`). Writes `labels.nii.gz` on the first image's grid.
    """
    import time

    from multimodalgen.device import resolve_device
    from multimodalgen.io import read_volume

    load_task = _engine("multimodalgen.fewshot.task", "load_task", "fewshot-apply")
    apply_task = _engine("multimodalgen.fewshot.task", "apply_task", "fewshot-apply")
    path = options["fewshot_task"]
    t0 = time.perf_counter()
    task = ctx.cache.get_model(f"fewshot-task:{path}:{os.stat(path).st_mtime_ns}", lambda: load_task(path))
    t1 = time.perf_counter()
    images = [read_volume(p, None if name == "image" else name) for name, p in _image_paths(inputs).items()]
    t2 = time.perf_counter()
    labels = apply_task(task, images, device=resolve_device(ctx.device), progress=ctx.progress)
    t3 = time.perf_counter()
    outputs, metrics = _write_labels_with_dice(labels, out_dir, inputs.get("label"))
    for value, count in (labels.metadata.get("fewshot", {}).get("voxels") or {}).items():
        metrics[f"voxels_{value}"] = count
    return {"outputs": outputs, "metrics": metrics,
            "timings": {"load_task": t1 - t0, "read": t2 - t1, "apply": t3 - t2, "write": time.perf_counter() - t3}}
