"""Few-shot task files: a trained head saved small and reused on other patients.

A task is a folder with
- `task_config.json`: kind "fewshot-task", format version, the `FewShotConfig` (features + head), the label values,
  the channel modalities in order, the number of input features, the training report, the weights' sha256;
- `head.safetensors`: the head's weights (float32, a few kB).

`apply_task` runs the head alone on a new patient's images (no painting): per label the largest connected
component of the head's decision is kept. It suits structures with a distinctive appearance; for others, paint
one slice on the new patient and pass the task as a warm start (`segment_from_slices(..., task=T)`).
"""

from __future__ import annotations

import dataclasses
from multimodalgen.io.checksum import sha256_file
import json
import os
from pathlib import Path

import numpy as np

from multimodalgen.errors import UserInputError

TASK_KIND = "fewshot-task"
FORMAT_VERSION = 1
CONFIG_NAME = "task_config.json"
WEIGHTS_NAME = "head.safetensors"


@dataclasses.dataclass
class Task:
    """A loaded task: config, labels, modalities, feature count and the head (torch module, eval mode)."""

    config: object
    labels: tuple[int, ...]
    modalities: list[str | None]
    n_features: int
    head: object
    report: dict


def save_task(path: str | os.PathLike, head, config, labels, modalities, n_features: int,
              report: dict | None = None) -> Path:
    """Write a task folder (created; existing files replaced atomically). Returns the folder path."""
    from safetensors.torch import save_file

    from multimodalgen.io import atomic_path, write_json

    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise UserInputError(f"cannot write the task to {folder}", expected="a folder path (created if missing)",
                             got="an existing file", fix="choose a folder name, e.g. --save-task my_task")
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().float().cpu().contiguous() for k, v in head.state_dict().items()}
    with atomic_path(folder / WEIGHTS_NAME) as tmp:
        save_file(state, str(tmp))
    digest = sha256_file(folder / WEIGHTS_NAME)
    write_json({"kind": TASK_KIND, "format_version": FORMAT_VERSION, "labels": [int(v) for v in labels],
                "modalities": list(modalities), "n_features": int(n_features), "n_classes": 1 + len(labels),
                "config": config.to_dict(), "weights_file": WEIGHTS_NAME, "sha256": digest,
                "training_report": _jsonable(report or {})}, folder / CONFIG_NAME)
    return folder


def load_task(path: str | os.PathLike) -> Task:
    """Read a task folder written by `save_task` (weights checked against their sha256)."""
    from safetensors.torch import load_file

    from multimodalgen.fewshot.engine import FewShotConfig
    from multimodalgen.fewshot.head import build_head

    folder = Path(path)
    config_path = folder / CONFIG_NAME
    if not config_path.is_file():
        raise UserInputError(f"no few-shot task at {folder}", expected=f"a folder with {CONFIG_NAME} and "
                             f"{WEIGHTS_NAME}", fix="give the folder written by --save-task")
    try:
        data = json.loads(config_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise UserInputError(f"unreadable task config {config_path}", got=str(exc)) from exc
    if data.get("kind") != TASK_KIND or int(data.get("format_version", 0)) > FORMAT_VERSION:
        raise UserInputError(f"{folder} is not a few-shot task this version can read",
                             expected=f"kind {TASK_KIND!r}, format <= {FORMAT_VERSION}",
                             got=f"kind {data.get('kind')!r}, format {data.get('format_version')}")
    weights = folder / data.get("weights_file", WEIGHTS_NAME)
    if not weights.is_file() or sha256_file(weights) != data.get("sha256"):
        raise UserInputError(f"the task weights in {folder} are missing or damaged",
                             expected="head.safetensors matching the sha256 in task_config.json",
                             fix="save the task again")
    config = FewShotConfig.from_dict(data["config"])
    head = build_head(int(data["n_features"]), int(data["n_classes"]), config.head)
    head.load_state_dict(load_file(str(weights)))
    head.eval()
    return Task(config, tuple(int(v) for v in data["labels"]), list(data["modalities"]), int(data["n_features"]),
                head, data.get("training_report", {}))


def apply_task(task: Task, images, *, device="cpu", progress=None):
    """Segment a new patient with a task's head alone (no painting): a label Volume on the first image's grid."""
    from multimodalgen.fewshot.inputs import align_channels, as_channel_list
    from multimodalgen.fewshot.features import FeatureSource
    from multimodalgen.fewshot.head import predict_logits
    from multimodalgen.fewshot.postprocess import decide
    from multimodalgen.progress import Progress
    from multimodalgen.volume import Volume

    progress = progress or Progress.null()
    channels = align_channels(as_channel_list(images), False, [])
    if len(channels) != len(task.modalities):
        raise UserInputError("the images do not match the task", expected=f"{len(task.modalities)} channel(s) "
                             f"({task.modalities})", got=f"{len(channels)} channel(s)",
                             fix="give the same modalities, in the same order, as when the task was saved")
    source = FeatureSource(np.stack([v.array for v in channels]), channels[0].affine,
                           [v.modality or m for v, m in zip(channels, task.modalities)], task.config.features,
                           device)
    if source.n_features != task.n_features:
        raise UserInputError("the task's features cannot be computed here", expected=f"{task.n_features} features",
                             got=f"{source.n_features}", fix="install the same encoder weights as when it was saved")
    progress.update("features", 0.1, "computing voxel features")
    feats = source.features(None)
    progress.update("predicting", 0.6, "applying the task head")
    logits = predict_logits(task.head, feats, device=device)
    classes = decide(logits[1:] - logits[:1])
    out = np.zeros(classes.shape, np.uint8 if max(task.labels) < 256 else np.int32)
    for c, value in enumerate(task.labels, start=1):
        out[_largest_component(classes == c)] = value
    progress.update("done", 1.0, "segmented")
    report = {"task_labels": list(task.labels), "voxels": {int(v): int((out == v).sum()) for v in task.labels}}
    return Volume(out, channels[0].affine.copy(), "LABEL", {"fewshot": report})


def _largest_component(mask: np.ndarray) -> np.ndarray:
    from scipy import ndimage as ndi

    labelled, n = ndi.label(mask, structure=np.ones((3, 3, 3), bool))
    if n <= 1:
        return mask
    sizes = np.bincount(labelled.ravel())[1:]
    return labelled == (1 + int(np.argmax(sizes)))


def _jsonable(value):
    return json.loads(json.dumps(value, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))
