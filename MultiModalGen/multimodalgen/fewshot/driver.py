"""Verb `fewshot` at file level: painted slices, labelled support volumes or a saved task -> a 3D label map.

One function for every door. The mode follows the inputs: `annotation` (painted slices), `support_images` +
`support_labels` (support volumes), or `apply_task` (a saved task folder). With a warm cache (worker, batch) and an
`image_id`, the painted-slice mode keeps one `FewShotSession` per image so features and head stay warm.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from multimodalgen.errors import UserInputError
from multimodalgen.verbs.result import Result, RunContext


def _channels(paths, modalities) -> list:
    from multimodalgen.io import read_volume

    modalities = list(modalities or [])
    modalities += [None] * (len(paths) - len(modalities))
    return [read_volume(p, m) for p, m in zip(paths, modalities)]


def fewshot_files(images: list, *, out: Path, ctx: RunContext, modalities: list | None = None, annotation=None,
                  support_images: list | None = None, support_labels: list | None = None, apply_task=None,
                  axis=None, labels=None, seed: int = 0, encoder: str | None = None, resample: bool = False,
                  register: str | None = None, save_task: str | None = None, task=None, image_id: str | None = None,
                  reset: bool = False, segments: list | None = None, reference_label=None,
                  preview: bool = False) -> Result:
    """The `fewshot` verb.

    Args:
        images: the patient's (query's) image channels, paths on one grid; `modalities`: their names (or None).
        out: label map to write (values = the painted / support label values; 0 = background).
        annotation: painted label map on the images' grid (painted-slice mode); `axis` (0 = i, 1 = j, 2 = k, a
            list, or None = detected), `labels` (values to segment), `save_task` (folder to save the head),
            `task` (a task folder to warm-start from), `image_id` + `reset` (warm session key, start over).
        support_images: per support case, its channel paths; `support_labels`: one label map per case;
            `register`: "auto" | "on" | "off" (carry the support labels by registration).
        apply_task: a saved task folder applied to `images` (no painting).
        encoder: "auto" | "on" | "off": add the foundation encoder's features (default off).
        segments: [{label, name, color, ...}] naming the output's label values (written with the label map).
        reference_label: optional ground truth: Dice per label in the metrics.
        preview: painted-slice mode only: the session's quick result on a crop of at most 128^3 voxels around the
            painting (0 outside), as the Slicer few-shot effect shows after each stroke.
    """
    modes = [annotation is not None, bool(support_images or support_labels), apply_task is not None]
    if sum(modes) != 1:
        raise UserInputError("choose one few-shot mode", expected="an annotation (painted slices), support images "
                             "with support labels, or a saved task to apply", got=f"{sum(modes)} modes",
                             fix="see `multimodalgen fewshot --help`")
    if not images:
        raise UserInputError("no image given", expected="one or more image channels of the patient")
    from multimodalgen.io import read_label

    reference = read_label(reference_label) if reference_label is not None else None   # refused before any work
    t0 = time.perf_counter()
    warm = False
    if modes[0]:
        label, warm, task_folder = _painted(images, modalities, annotation, ctx, axis=axis, labels=labels, seed=seed,
                                            encoder=encoder, resample=resample, save_task=save_task, task=task,
                                            image_id=image_id, reset=reset, preview=preview)
    elif modes[1]:
        label, task_folder = _support(images, modalities, support_images, support_labels, ctx, labels=labels,
                                      seed=seed, register=register), None
    else:
        label, task_folder = _apply(images, modalities, apply_task, ctx), None
    t1 = time.perf_counter()
    from multimodalgen.io import write_named_labels

    values = [int(v) for v in np.unique(label.array) if v > 0]
    if segments:
        label.metadata["segments"] = [dict(s) for s in segments]
    outputs = write_named_labels(label, out)
    if task_folder:
        outputs["task"] = Path(task_folder)
    report = {k: v for k, v in (label.metadata.get("fewshot") or {}).items()
              if k not in ("seconds",) and isinstance(v, (str, int, float, list, dict, bool))}
    metrics = {"labels": values, "warm": warm, **report}
    if reference is not None:
        from multimodalgen.dice import dice_scores

        metrics["dice"] = dice_scores(label, reference)
    timings = {"fewshot": t1 - t0, "write": time.perf_counter() - t1}
    engine_seconds = (label.metadata.get("fewshot") or {}).get("seconds")
    if isinstance(engine_seconds, dict) and "total" in engine_seconds:  # painted-slice engine alone, no file I/O
        timings["engine"] = float(engine_seconds["total"])
    return Result(outputs, metrics, timings)


def _painted(images, modalities, annotation, ctx, *, axis, labels, seed, encoder, resample, save_task, task,
             image_id, reset, preview=False):
    from multimodalgen.fewshot.engine import FewShotConfig
    from multimodalgen.fewshot.features import FeatureConfig
    from multimodalgen.fewshot.session import FewShotSession
    from multimodalgen.io import read_label

    config = FewShotConfig(features=FeatureConfig(encoder=encoder)) if encoder else None

    def open_session():
        return FewShotSession(_channels(images, modalities), config=config, device=ctx.torch_device(), seed=seed,
                              resample=resample, task=task)

    warm = bool(image_id) and ctx.cache is not None and f"fewshot|{image_id}" in ctx.cache.features
    if image_id and ctx.cache is not None:
        session = ctx.cache.get_features(str(image_id), "fewshot", open_session)
    else:
        session = open_session()
    if reset:
        session.reset()
    run = session.preview if preview else session.segment
    label = run(read_label(annotation), axis=axis, labels=labels, progress=ctx.progress, resample=resample)
    return label, warm, (session.save_task(save_task) if save_task else None)


def _support(images, modalities, support_images, support_labels, ctx, *, labels, seed, register):
    from multimodalgen.fewshot.support import segment_from_support
    from multimodalgen.io import read_label, read_volume

    if not (support_images and support_labels) or len(support_images) != len(support_labels):
        raise UserInputError("support mode needs support images and one support label map per case",
                             got=f"{len(support_images or [])} case(s) of images, {len(support_labels or [])} "
                                 "label map(s)")
    modalities = list(modalities or [])
    support = [[read_volume(p, modalities[n] if n < len(modalities) else None) for n, p in enumerate(case)]
               for case in support_images]
    return segment_from_support(support, [read_label(p) for p in support_labels], _channels(images, modalities),
                                labels=labels, device=ctx.torch_device(), progress=ctx.progress, seed=seed,
                                register=register or "auto")


def _apply(images, modalities, apply_task, ctx):
    import os

    from multimodalgen.fewshot.task import apply_task as run_task
    from multimodalgen.fewshot.task import load_task

    key = f"fewshot-task:{Path(apply_task).resolve()}:{os.stat(apply_task).st_mtime_ns}"
    task = ctx.model(key, lambda: load_task(apply_task))
    return run_task(task, _channels(images, modalities), device=ctx.torch_device(), progress=ctx.progress)
