"""Volume-level and file-level few-shot API (what the CLI, the Slicer worker and scripts call).

`segment_from_slices(images, annotations)`: the image channels of one patient (Volumes on one grid, e.g. T1, T2)
and a label map painted on a few slices (same grid) -> a label map on the image grid. Grids are never changed
silently: channels or a painting on another grid are an error unless `resample=True`, which resamples them onto
the first image's grid (linear for images, nearest for the painting) and says so in the result's report
(`volume.metadata["fewshot"]["notes"]`).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from multimodalgen.errors import UserInputError
from multimodalgen.volume import Volume, check_finite, check_not_constant, same_grid


def as_channel_list(images) -> list[Volume]:
    """A list of scalar Volumes from a Volume, a `(C, I, J, K)` Volume or a list of them."""
    if isinstance(images, Volume):
        images = [images]
    if not isinstance(images, (list, tuple)) or not images:
        raise UserInputError("no image given", expected="a list of one or more image Volumes", got=repr(type(images)))
    out: list[Volume] = []
    for v in images:
        if not isinstance(v, Volume):
            raise UserInputError("images must be Volumes", expected="multimodalgen.volume.Volume",
                                 got=type(v).__name__, fix="read them with multimodalgen.io.read_volume")
        out.extend(v.channel(c) for c in range(v.n_channels)) if v.n_channels > 1 else out.append(v)
    return out


def align_channels(images: list[Volume], resample: bool, notes: list[str]) -> list[Volume]:
    """Check that every channel is on the first one's grid; resample (linear, reported) when allowed."""
    from multimodalgen.resample import resample_like

    reference = images[0]
    out = [reference]
    for n, v in enumerate(images[1:], start=1):
        if same_grid(reference, v):
            out.append(v)
            continue
        if not resample:
            raise UserInputError(f"image channel {n + 1} is on another grid than channel 1",
                                 expected=f"shape {reference.shape3d}, spacing "
                                          f"{np.round(reference.spacing, 4).tolist()} mm",
                                 got=f"shape {v.shape3d}, spacing {np.round(v.spacing, 4).tolist()} mm",
                                 fix="register/resample the channels onto one grid first, or pass resample=True "
                                     "(--resample) to resample them onto channel 1's grid")
        out.append(resample_like(v, reference, "linear"))
        notes.append(f"image channel {n + 1} was resampled (linear) onto channel 1's grid")
    for n, v in enumerate(out):
        check_finite(v, f"image channel {n + 1}")
        check_not_constant(v, f"image channel {n + 1}")
    return out


def align_annotations(annotations: Volume, reference: Volume, resample: bool, notes: list[str]) -> np.ndarray:
    """The painting as an `(I, J, K)` array on the reference grid (nearest-neighbour resampling when allowed)."""
    from multimodalgen.resample import resample_like

    if not isinstance(annotations, Volume):
        raise UserInputError("annotations must be a Volume", expected="a label map Volume on the image grid",
                             got=type(annotations).__name__)
    if annotations.array.ndim != 3:
        raise UserInputError("the annotation must be a single label map", expected="shape (I, J, K)",
                             got=f"shape {annotations.array.shape}")
    if same_grid(reference, annotations):
        return annotations.array
    if not resample:
        raise UserInputError("the painting is on another grid than the image",
                             expected=f"shape {reference.shape3d}, spacing {np.round(reference.spacing, 4).tolist()} "
                                      "mm and the image's origin/orientation",
                             got=f"shape {annotations.shape3d}, spacing {np.round(annotations.spacing, 4).tolist()} mm",
                             fix="paint on the image itself (Slicer: segmentation geometry = the image), or pass "
                                 "resample=True (--resample) to resample the painting (nearest neighbour)")
    notes.append("the painting was resampled (nearest neighbour) onto the image grid; painted slices may have moved")
    return resample_like(annotations, reference, "nearest").array


def _resolve_device(device):
    from multimodalgen.device import resolve_device

    return device if not isinstance(device, str) else resolve_device(device)


def segment_from_slices(images, annotations: Volume, *, axis=None, labels=None, device="cpu", progress=None,
                        seed: int = 0, config=None, resample: bool = False, task=None, session=None) -> Volume:
    """Segment the painted structure(s) in 3D from a few painted slices.

    Args:
        images: the patient's image channels: a list of scalar Volumes on one grid (or one Volume).
        annotations: label map on the image grid; every slice (along `axis`) holding painting is fully annotated.
        axis: slice axis (0 = i, 1 = j, 2 = k), a list of axes, or None to detect it.
        labels: label values to segment (None = every painted label).
        device: "cpu", "cuda", "auto" or a torch.device.
        progress: `multimodalgen.progress.Progress` (or None).
        seed: seed of every random choice (same inputs + seed -> same output).
        config: `FewShotConfig` (None = defaults).
        resample: resample channels / the painting on other grids onto the first image's grid (reported).
        task: a task folder (or loaded `Task`) whose head initialises the training (warm start).
        session: a `FewShotSession` to reuse (features and head stay warm).

    Returns:
        Label Volume on the first image's grid (uint8 label values, 0 = background); the run's report in
        `metadata["fewshot"]`.
    """
    from multimodalgen.fewshot.session import FewShotSession

    if session is None:
        session = FewShotSession(images, config=config, device=device, seed=seed, resample=resample, task=task)
    return session.segment(annotations, axis=axis, labels=labels, progress=progress, resample=resample)


def segment_files(image_paths: list[tuple[str | None, str]], annotations_path, out_path, *, axis=None, labels=None,
                  device="cpu", progress=None, seed: int = 0, config=None, resample: bool = False,
                  save_task: str | os.PathLike | None = None, task=None) -> dict:
    """File-level few-shot: read `[(modality or None, path), ...]` and the painting, write the label map.

    Returns the run's report (also the CLI's JSON result).
    """
    from multimodalgen.fewshot.session import FewShotSession
    from multimodalgen.io import read_label, read_volume, write_label

    images = [read_volume(p, m) for m, p in image_paths]
    painting = read_label(annotations_path)
    session = FewShotSession(images, config=config, device=device, seed=seed, resample=resample, task=task)
    result = session.segment(painting, axis=axis, labels=labels, progress=progress, resample=resample)
    write_label(result, out_path)
    report = dict(result.metadata.get("fewshot", {}))
    report["output"] = str(out_path)
    if save_task:
        report["task"] = str(session.save_task(save_task))
    return report


def normalise_image_paths(image_paths) -> list[tuple[str | None, str]]:
    """`[(modality, path)]` from a dict {modality: path}, a list of paths or of (modality, path) pairs."""
    if isinstance(image_paths, dict):
        return [(str(m) if m else None, str(p)) for m, p in image_paths.items() if p]
    if isinstance(image_paths, (str, os.PathLike)):
        return [(None, str(image_paths))]
    out: list[tuple[str | None, str]] = []
    for item in image_paths:
        if isinstance(item, (tuple, list)) and len(item) == 2:
            out.append((str(item[0]) if item[0] else None, str(item[1])))
        else:
            out.append((None, str(item)))
    return out


def apply_task_files(task_path, image_paths, out_path, *, reference_label=None, device="cpu",
                     progress=None) -> dict:
    """File-level reuse of a saved task on another patient (no painting).

    Args:
        task_path: task folder written by `save_task` / `--save-task`.
        image_paths: {modality: path} (batch manifests), or a list of paths or (modality, path) pairs.
        out_path: output label file, or a folder (then `fewshot.nii.gz` inside it).
        reference_label: optional ground-truth label file: Dice per label is added to the report's metrics.

    Returns:
        report dict with "outputs" (file names) and "metrics".
    """
    from multimodalgen.fewshot.task import apply_task, load_task
    from multimodalgen.io import read_label, read_volume, write_label

    task = load_task(task_path)
    pairs = normalise_image_paths(image_paths)
    out = Path(out_path)
    if out.is_dir() or not out.suffix:
        out = out / "fewshot.nii.gz"
    images = [read_volume(p, m) for m, p in pairs]
    result = apply_task(task, images, device=_resolve_device(device), progress=progress)
    write_label(result, out)
    report = dict(result.metadata.get("fewshot", {}))
    report["outputs"] = {"segmentation": out.name}
    report["output"] = str(out)
    if reference_label:
        truth = read_label(reference_label)
        metrics = {}
        for value in task.labels:
            a, b = result.array == value, truth.array == value
            denominator = int(a.sum()) + int(b.sum())
            metrics[f"dice_{value}"] = round(2.0 * int((a & b).sum()) / denominator, 6) if denominator else 1.0
        report["metrics"] = metrics
    return report
