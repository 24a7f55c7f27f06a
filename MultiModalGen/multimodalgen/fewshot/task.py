"""Few-shot task files: a trained head saved small and reused on other patients.

A task is a folder with
- `task_config.json`: kind "fewshot-task", format version, the `FewShotConfig` (features + head), the label values,
  the channel modalities in order, the number of input features, the training report, the files' sha256, and the
  spatial prior's metadata (voxel size and content hash of the image it was trained on, voxels per label);
- `head.safetensors`: the head's weights (float32, a few kB);
- `prior.safetensors`: the spatial prior: the session's result as a label crop (uint8) with its voxel -> RAS affine,
  and the session's first image channel at <= 2 mm (float16) with its affine (for alignment to other images).

`apply_task` segments an image with no painting: the prior is aligned to it (nothing moves on the task's own
image, affine registration of the reference image otherwise) and fused with the head (`transfer.py`); an image the
task does not fit is refused or the result flagged. Tasks also warm-start painted-slice mode
(`segment_from_slices(..., task=T)`; the painting must use the task's labels).
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
FORMAT_VERSION = 2
CONFIG_NAME = "task_config.json"
WEIGHTS_NAME = "head.safetensors"
PRIOR_NAME = "prior.safetensors"
#: The reference image stored for alignment is resampled to at most this voxel size (mm).
REFERENCE_MM = 2.0


@dataclasses.dataclass
class Task:
    """A loaded task: config, labels, modalities, feature count and the head (torch module, eval mode)."""

    config: object
    labels: tuple[int, ...]
    modalities: list[str | None]
    n_features: int
    head: object
    report: dict
    prior: dict = dataclasses.field(default_factory=dict)


def spatial_prior(result, reference) -> tuple[dict, dict]:
    """(arrays, metadata) of the spatial prior from a session result Volume and its first image channel."""
    from multimodalgen.fewshot.features import content_hash
    from multimodalgen.resample import isotropic_grid, resample_to_grid

    labels = np.asarray(result.array)
    idx = np.argwhere(labels > 0)
    if idx.size == 0:
        raise UserInputError("nothing to save: the result is empty", expected="a result with labelled voxels",
                             fix="paint the structure and run the segmentation first")
    lo, hi = idx.min(0), idx.max(0) + 1
    crop = labels[tuple(slice(a, b) for a, b in zip(lo, hi))]
    crop_affine = result.affine.copy()
    crop_affine[:3, 3] = result.affine[:3, :3] @ lo + result.affine[:3, 3]
    spacing = np.asarray(reference.spacing, np.float64)
    if spacing.min() < REFERENCE_MM:
        shape, affine = isotropic_grid(reference, REFERENCE_MM)
        small = resample_to_grid(reference, shape, affine, "linear")
    else:
        small = reference
    arrays = {"labels": np.ascontiguousarray(crop.astype(np.uint8 if crop.max() < 256 else np.int32)),
              "labels_affine": crop_affine.astype(np.float64),
              "reference": np.ascontiguousarray(np.asarray(small.array, np.float16)),
              "reference_affine": small.affine.astype(np.float64)}
    meta = {"image_spacing": spacing.tolist(), "image_shape": list(reference.shape3d),
            "image_hash": content_hash([reference.array], reference.affine),
            "voxels": {str(int(v)): int((labels == v).sum()) for v in np.unique(labels) if v > 0}}
    return arrays, meta


def save_task(path: str | os.PathLike, head, config, labels, modalities, n_features: int,
              report: dict | None = None, *, result=None, reference=None, agreement: dict | None = None) -> Path:
    """Write a task folder (created; existing files replaced atomically). Returns the folder path.

    `result` (the session's label Volume) and `reference` (its first image channel) give the spatial prior that
    lets the task reproduce the session and transfer to other images; without them the task holds the head only
    (warm start for painted-slice mode; `apply_task` refuses it). `agreement`: the head's agreement with the result
    on its own image (`transfer.head_prior_agreement`), the reference for `apply_task`'s warnings."""
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
    prior_meta: dict = {}
    if result is not None and reference is not None:
        from safetensors.numpy import save_file as save_numpy

        arrays, prior_meta = spatial_prior(result, reference)
        with atomic_path(folder / PRIOR_NAME) as tmp:
            save_numpy(arrays, str(tmp))
        prior_meta["sha256"] = sha256_file(folder / PRIOR_NAME)
        prior_meta["head_prior_agreement"] = dict(agreement or {})
        prior_meta["file"] = PRIOR_NAME
    elif (folder / PRIOR_NAME).exists():
        (folder / PRIOR_NAME).unlink()
    write_json({"kind": TASK_KIND, "format_version": FORMAT_VERSION, "labels": [int(v) for v in labels],
                "modalities": list(modalities), "n_features": int(n_features), "n_classes": 1 + len(labels),
                "config": config.to_dict(), "weights_file": WEIGHTS_NAME, "sha256": digest,
                "spatial_prior": prior_meta, "training_report": _jsonable(report or {})}, folder / CONFIG_NAME)
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
    if data.get("kind") != TASK_KIND or data.get("format_version") != FORMAT_VERSION:
        raise UserInputError(f"{folder} is not a few-shot task this version can read",
                             expected=f"kind {TASK_KIND!r}, format {FORMAT_VERSION}",
                             got=f"kind {data.get('kind')!r}, format {data.get('format_version')}",
                             fix="save the task again with this version (paint, then --save-task)")
    weights = folder / data.get("weights_file", WEIGHTS_NAME)
    if not weights.is_file() or sha256_file(weights) != data.get("sha256"):
        raise UserInputError(f"the task weights in {folder} are missing or damaged",
                             expected="head.safetensors matching the sha256 in task_config.json",
                             fix="save the task again")
    config = FewShotConfig.from_dict(data["config"])
    head = build_head(int(data["n_features"]), int(data["n_classes"]), config.head)
    head.load_state_dict(load_file(str(weights)))
    head.eval()
    prior = _load_prior(folder, data.get("spatial_prior") or {})
    return Task(config, tuple(int(v) for v in data["labels"]), list(data["modalities"]), int(data["n_features"]),
                head, data.get("training_report", {}), prior)


def _load_prior(folder: Path, meta: dict) -> dict:
    if not meta:
        return {}
    from safetensors.numpy import load_file as load_numpy

    path = folder / meta.get("file", PRIOR_NAME)
    if not path.is_file() or sha256_file(path) != meta.get("sha256"):
        raise UserInputError(f"the task's spatial prior in {folder} is missing or damaged",
                             expected=f"{PRIOR_NAME} matching the sha256 in task_config.json",
                             fix="save the task again")
    return dict(meta, **load_numpy(str(path)))


def apply_task(task: Task, images, *, device="cpu", progress=None, align: str = "auto",
               prior_tau_mm: float = 1.5, margin_mm: float = 10.0):
    """Segment an image with a task and no painting: a label Volume on the first image's grid.

    The task's spatial prior is aligned to the image (`transfer.align_prior`: nothing moves on the task's own
    image; `align` "auto" registers the task's reference image otherwise, "none" trusts the headers) and fused
    with the head (`transfer.fuse_with_prior`). Checks and warnings: see `transfer.py`; the report
    (`metadata["fewshot"]`) holds the alignment, per-label voxels and agreement, and the notes.
    """
    from multimodalgen.fewshot.inputs import align_channels, as_channel_list
    from multimodalgen.fewshot.features import FeatureSource
    from multimodalgen.fewshot.head import predict_logits
    from multimodalgen.fewshot.transfer import align_prior, check_fit, fuse_with_prior, warnings_for
    from multimodalgen.progress import Progress
    from multimodalgen.volume import Volume

    progress = progress or Progress.null()
    if not task.prior:
        raise UserInputError("this task holds no spatial prior", expected="a task saved from a session result "
                             "(--save-task after a painted-slice run)",
                             fix="save the task again, or use it as a warm start (--task) with a painting")
    channels = align_channels(as_channel_list(images), False, [])
    check_fit(task, channels)
    source = FeatureSource(np.stack([v.array for v in channels]), channels[0].affine,
                           [v.modality or m for v, m in zip(channels, task.modalities)], task.config.features,
                           device)
    if source.n_features != task.n_features:
        raise UserInputError("the task's features cannot be computed here", expected=f"{task.n_features} features",
                             got=f"{source.n_features}", fix="install the same encoder weights as when it was saved")
    progress.update("aligning", 0.1, "aligning the task's spatial prior")
    prior_labels, how = align_prior(task, channels[0], align, device=device)
    if not np.isin(prior_labels, task.labels).any():
        raise UserInputError("the task's structures fall outside this image", expected="an image of the same "
                             "body part as the task's", got=f"no prior voxel inside the image after {how}",
                             fix="check the image, or paint it (painted-slice mode)")
    progress.update("predicting", 0.5, "applying the task head")

    def head_logodds(box):
        logits = predict_logits(task.head, source.features(box), device=device)
        return np.clip(logits[1:] - logits[:1], -6.0, 6.0)

    out, stats = fuse_with_prior(head_logodds, prior_labels, task.labels, source.spacing,
                                 head_weight=task.config.head_weight, prior_tau_mm=prior_tau_mm, margin_mm=margin_mm)
    notes = [f"spatial prior carried by {how}"] + warnings_for(stats, task.prior.get("voxels", {}), source.spacing,
                                                              task.prior.get("image_spacing"),
                                                              task.prior.get("head_prior_agreement"))
    progress.update("done", 1.0, "segmented")
    report = {"task_labels": list(task.labels), "labels": list(task.labels), "alignment": how, "notes": notes,
              "voxels": {int(v): int((out == v).sum()) for v in task.labels}, "per_label": stats}
    return Volume(out, channels[0].affine.copy(), "LABEL", {"fewshot": report})


def _jsonable(value):
    return json.loads(json.dumps(value, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))
