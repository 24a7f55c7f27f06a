"""Worker tasks that run the engines: files in, files out (file references, see `protocol`).

Parameter schemas (``{"file": path}`` marks a file; every task also accepts ``device`` and ``output_dir``):

- ``register``: fixed, moving (files); mode ("rigid" | "affine" | "deformable"), preset ("fast" | "accurate");
  optional fixed_mask, moving_mask, moving_labels (files), resample (bool: also write the warped moving image).
  Outputs: ``affine`` (4x4 RAS fixed -> moving, applied after the displacement), ``displacement`` (file:
  total displacement T(x) - x, `(3, I, J, K)`, **RAS** mm components, on the fixed grid, resampling direction;
  None for rigid/affine), ``transform`` (file: ITK transform.h5, LPS, for other tools), ``warped``,
  ``warped_labels`` (files, when asked), ``report``.
- ``fewshot``: images (list of files, same patient; the first is the grid), annotation (file: painted label map on
  that grid, 0 = unpainted), optional image_id (key of the warm session: features and head stay in the worker),
  axis, modalities, reset. Or support mode: support_images ([[file, ...] per case]), support_labels ([file per
  case]) and images (the query). Outputs: ``segmentation`` (file: label map with the painted/support label
  values), ``labels``, ``warm``, ``report``.
- ``segment``: images ({modality: file}), optional adapter (folder or name), resample (bool). Outputs:
  ``segmentation`` (file: label map on the first image's grid), ``segments`` ([{label, name}]), ``report``.
- ``finetune``: cases (list of {images: {modality: file}, label: file}) and/or cases_csv (file, CASES.csv),
  adapter_name, adapters_dir. Outputs: ``adapter`` (the adapter folder), ``adapter_zip`` (file: the same
  folder zipped, for remote clients), ``cases``.
- ``features``: image (file), optional modality. Outputs: ``features`` (file, `(16, I, J, K)`).
"""

from __future__ import annotations

import pathlib
from typing import Any

import numpy as np

from multimodalgen.errors import UserInputError
from multimodalgen.worker import protocol
from multimodalgen.worker.tasks import TaskContext, load_engine


def _device(ctx: TaskContext):
    from multimodalgen.device import resolve_device

    return resolve_device(ctx.device)


def _read(params: dict, name: str, label: bool = False, optional: bool = False, modality: str | None = None):
    from multimodalgen.io import read_label, read_volume

    path = protocol.require_file(params, name, optional=optional)
    if path is None:
        return None
    return read_label(path) if label else read_volume(path, modality=modality)


def _out(ctx: TaskContext, name: str) -> pathlib.Path:
    return pathlib.Path(ctx.workdir) / name


# -- registration -------------------------------------------------------------------------------------------------
def register_task(params: dict, ctx: TaskContext) -> dict:
    register_volumes = load_engine("multimodalgen.registration", "register_volumes", "register")
    warp_volume = load_engine("multimodalgen.registration.export", "warp_volume", "register")
    write_transform = load_engine("multimodalgen.registration.export", "write_transform", "register")
    from multimodalgen.io import write_label, write_volume
    from multimodalgen.volume import Volume

    fixed, moving = _read(params, "fixed"), _read(params, "moving")
    fixed_mask = _read(params, "fixed_mask", label=True, optional=True)
    moving_mask = _read(params, "moving_mask", label=True, optional=True)
    moving_labels = _read(params, "moving_labels", label=True, optional=True)
    result = register_volumes(fixed, moving, mode=params.get("mode", "deformable"), preset=params.get("preset", "fast"),
                              fixed_mask=fixed_mask, moving_mask=moving_mask, moving_labels=moving_labels,
                              device=_device(ctx), progress=ctx.progress.sub("register", 0.0, 0.9))
    ctx.progress.update("export", 0.9, "writing the transform")
    outputs: dict[str, Any] = {"affine": np.asarray(result.affine).tolist(), "displacement": None,
                               "report": result.report}
    outputs["transform"] = protocol.file_ref(str(write_transform(result, _out(ctx, "transform.h5"))))
    dense = None
    if result.displacement is not None:
        dense = result.dense_map()
        total = dense - _world(result.fixed_shape, result.fixed_affine)
        displacement = Volume(total.astype(np.float32), result.fixed_affine.copy(), "FEATURES",
                              {"description": "fixed->moving total displacement, mm, RAS components"})
        write_volume(displacement, _out(ctx, "displacement_ras.nii.gz"))
        outputs["displacement"] = protocol.file_ref(str(_out(ctx, "displacement_ras.nii.gz")))
    if params.get("resample"):
        warped = warp_volume(result, moving, "linear", dense_map=dense)
        write_volume(warped, _out(ctx, "warped.nii.gz"))
        outputs["warped"] = protocol.file_ref(str(_out(ctx, "warped.nii.gz")))
    if moving_labels is not None:
        warped_labels = warp_volume(result, moving_labels, "nearest", dense_map=dense)
        write_label(warped_labels, _out(ctx, "warped_labels.nii.gz"))
        outputs["warped_labels"] = protocol.file_ref(str(_out(ctx, "warped_labels.nii.gz")))
    ctx.progress.update("export", 1.0, "done")
    return outputs


def _world(shape, affine) -> np.ndarray:
    from multimodalgen.volume import grid_world_coordinates

    return grid_world_coordinates(tuple(shape), affine)


# -- few-shot -----------------------------------------------------------------------------------------------------
def fewshot_task(params: dict, ctx: TaskContext) -> dict:
    """Painted slices -> 3D (a warm `FewShotSession` per image_id), or support volume(s) -> query (no state)."""
    from multimodalgen.io import write_label

    if params.get("support_images"):
        return _fewshot_support(params, ctx)
    FewShotSession = load_engine("multimodalgen.fewshot.session", "FewShotSession", "fewshot")
    refs = params.get("images") or []
    if not isinstance(refs, list) or not refs:
        raise UserInputError("few-shot needs at least one image", expected="images: [file, ...]", got=repr(refs)[:60])
    modalities = list(params.get("modalities") or [None] * len(refs))
    annotation = _read(params, "annotation", label=True)
    image_id = str(params.get("image_id") or "")
    warm = bool(image_id) and f"fewshot|{image_id}" in ctx.state.features
    device = _device(ctx)

    def open_session():
        images = [_read({"i": ref}, "i", modality=m) for ref, m in zip(refs, modalities)]
        return FewShotSession(images, device=device, resample=True)

    session = ctx.state.get_features(image_id, "fewshot", open_session) if image_id else open_session()
    if params.get("reset"):
        session.reset()
    label = session.segment(annotation, axis=params.get("axis"), progress=ctx.progress, resample=False)
    write_label(label, _out(ctx, "fewshot.nii.gz"))
    report = dict(session.last_report or {})
    return {"segmentation": protocol.file_ref(str(_out(ctx, "fewshot.nii.gz"))),
            "labels": [int(v) for v in (session.labels or ())], "warm": warm, "report": report}


def _fewshot_support(params: dict, ctx: TaskContext) -> dict:
    """support_images: [[file, ...] per case], support_labels: [file per case], images: query [file, ...]."""
    segment_from_support = load_engine("multimodalgen.fewshot.support", "segment_from_support", "fewshot")
    from multimodalgen.io import write_label

    support_images = [[_read({"i": r}, "i") for r in case] for case in params["support_images"]]
    support_labels = [_read({"l": r}, "l", label=True) for r in params.get("support_labels") or []]
    query = [_read({"i": r}, "i") for r in params.get("images") or []]
    label = segment_from_support(support_images, support_labels, query, device=_device(ctx), progress=ctx.progress)
    write_label(label, _out(ctx, "fewshot.nii.gz"))
    return {"segmentation": protocol.file_ref(str(_out(ctx, "fewshot.nii.gz"))),
            "labels": [int(v) for v in np.unique(label.array) if v > 0], "warm": False,
            "report": {k: v for k, v in label.metadata.items() if isinstance(v, (str, int, float, list, dict))}}


# -- personalized segmentation, fine-tuning, features -------------------------------------------------------------
def _images_by_modality(params: dict) -> dict:
    images = params.get("images")
    if not isinstance(images, dict) or not images:
        raise UserInputError("no images given", expected="images: {modality: file}", got=repr(images)[:60])
    return {str(m): _read({"i": ref}, "i", modality=str(m)) for m, ref in images.items()}


def segment_task(params: dict, ctx: TaskContext) -> dict:
    segment_volumes = load_engine("multimodalgen.personalized.inference", "segment_volumes", "segment")
    from multimodalgen.io import write_label

    images = _images_by_modality(params)
    label = segment_volumes(images, adapter=params.get("adapter"), device=_device(ctx), progress=ctx.progress,
                            resample=bool(params.get("resample", False)))
    names = {int(k): str(v) for k, v in (label.metadata.get("labels") or {}).items()}
    present = {int(v) for v in np.unique(label.array)}
    segments = [{"label": k, "name": names.get(k, f"label {k}")} for k in sorted(set(names) | present) if k > 0]
    write_label(label, _out(ctx, "segmentation.nii.gz"))
    report = {k: v for k, v in label.metadata.items() if k in ("modalities", "seconds", "ttp_seconds")}
    return {"segmentation": protocol.file_ref(str(_out(ctx, "segmentation.nii.gz"))), "segments": segments,
            "report": report}


def write_cases_csv(cases: list[dict], user_csv: str | None, target: pathlib.Path) -> int:
    """One CASES.csv (absolute paths) from the user's CASES.csv (relative paths resolved against its folder)
    and cases given as {images: {modality: path}, label: path}. Returns the number of cases."""
    import csv

    rows: list[dict[str, str]] = []
    if user_csv:
        base = pathlib.Path(user_csv).resolve().parent
        with open(user_csv, newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                rows.append({k.strip(): (str((base / v.strip()).resolve()) if v and v.strip() else "")
                             for k, v in row.items() if k})
    for case in cases:
        row = {m: protocol.require_file({"x": ref}, "x") for m, ref in case["images"].items()}
        row["label"] = protocol.require_file(case, "label")
        rows.append(row)
    if not rows:
        raise UserInputError("no training cases", fix="give a CASES.csv or the current patient with a segmentation")
    columns = sorted({k for r in rows for k in r if k != "label"}) + ["label"]
    with open(target, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({c: row.get(c, "") for c in columns})
    return len(rows)


def finetune_task(params: dict, ctx: TaskContext) -> dict:
    finetune = load_engine("multimodalgen.personalized.finetune", "finetune", "finetune")
    name = str(params.get("adapter_name") or "")
    if not name or any(c in name for c in "/\\:"):
        raise UserInputError("invalid adapter name", expected="a plain name such as site-adapter", got=repr(name))
    adapters_dir = pathlib.Path(str(params.get("adapters_dir") or ctx.workdir))
    csv_path = _out(ctx, "cases.csv")
    count = write_cases_csv(list(params.get("cases") or []), protocol.require_file(params, "cases_csv", optional=True),
                            csv_path)
    out = finetune(csv_path, adapters_dir / name, device=_device(ctx), progress=ctx.progress,
                   resample=bool(params.get("resample", False)), name=name)
    import shutil

    archive = shutil.make_archive(str(_out(ctx, name)), "zip", root_dir=str(out))  # what a remote client downloads
    return {"adapter": str(out), "adapter_name": name, "adapter_zip": protocol.file_ref(archive), "cases": count}


def features_task(params: dict, ctx: TaskContext) -> dict:
    features_for_volume = load_engine("multimodalgen.encoder.inference", "features_for_volume", "features")
    from multimodalgen.io import write_volume

    image = _read(params, "image", modality=params.get("modality"))
    device = _device(ctx)
    model = ctx.state.get_model(f"encoder:default:{device}", lambda: _load_encoder(device))
    features = features_for_volume(image, model=model, device=device, progress=ctx.progress)
    write_volume(features, _out(ctx, "features.nii.gz"))
    return {"features": protocol.file_ref(str(_out(ctx, "features.nii.gz"))), "channels": features.n_channels}


def _load_encoder(device):
    load_encoder = load_engine("multimodalgen.encoder.weights", "load_encoder", "features")
    return load_encoder(device=device)
