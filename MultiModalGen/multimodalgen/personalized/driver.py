"""Verbs `segment` and `finetune` at file level: the one read -> run -> write path for every door."""

from __future__ import annotations

import csv
import time
from pathlib import Path

import numpy as np

from multimodalgen.errors import UserInputError
from multimodalgen.verbs.result import Result, RunContext


def label_segments(label) -> list[dict]:
    """The segments of a label Volume: its `metadata["segments"]` when the engine named them, else one entry
    `{"label", "name"}` per label value (names from `metadata["labels"]` {value: name}, else "label <value>")."""
    segments = label.metadata.get("segments")
    if segments:
        return [dict(s) for s in segments]
    names = {int(k): str(v) for k, v in (label.metadata.get("labels") or {}).items()}
    present = {int(v) for v in np.unique(label.array)}
    return [{"label": k, "name": names.get(k, f"label {k}")} for k in sorted(set(names) | present) if k > 0]


def segment_files(images: dict, *, out: Path, ctx: RunContext, adapter: str | None = None,
                  base_model: str | None = None, probabilities: bool = False, ttp_steps: int = 0,
                  refine: str = "intensity", resample: bool = False, reference_label=None, atlas=None,
                  atlas_weight: float | None = None) -> Result:
    """The `segment` verb: personalized segmentation of one patient from any subset of modalities.

    Args:
        images: {modality: image path} (modalities known to the model, e.g. T1, T2, PD).
        out: label map to write (.nii.gz, .nrrd, .seg.nrrd); segment names/colours/terminology go into the
            .seg.nrrd itself or, for other formats, into `<name>.labels.json` beside it.
        adapter, base_model: adapter folder/name and base model folder/name (None: the base model / default).
        probabilities: also write `<name>.probabilities.nii.gz` `(C, I, J, K)` float32 beside `out`.
        ttp_steps: test-time personalization steps (0 = off). resample: resample other grids onto the reference.
        refine: "intensity" (default: the tissues' split refined by this image's own intensities, see
            `personalized.refine`) or "none" (the network's answer as is).
        reference_label: optional ground truth: Dice per label in the metrics.
        atlas: optional 4D tissue atlas file (SPM TPM order, `personalized.atlas`), placed on the images by affine
            registration and used as the spatial prior at power `atlas_weight` (None: `DEFAULT_ATLAS_WEIGHT`).
    Returns:
        outputs segmentation (+ labels sidecar, probabilities); metrics segments, modalities, adapter, Dice,
        atlas (source, weight, brain agreement, registration seconds; None without an atlas).
    """
    from multimodalgen.io import read_label, read_volume, write_named_labels, write_volume
    from multimodalgen.personalized.inference import load_with_adapter, segment_volumes

    if not isinstance(images, dict) or not images:
        raise UserInputError("no images given", expected="images: {modality: path}", got=repr(images)[:60])
    from multimodalgen.personalized.atlas import DEFAULT_ATLAS_WEIGHT, check_atlas_weight, read_tissue_atlas

    if atlas_weight is not None and atlas is None:
        raise UserInputError("an atlas weight without an atlas", expected="--atlas PATH with --atlas-weight",
                             fix="give the tissue atlas with --atlas, or leave out --atlas-weight")
    atlas_weight = DEFAULT_ATLAS_WEIGHT if atlas_weight is None else atlas_weight
    check_atlas_weight(atlas_weight)
    reference = read_label(reference_label) if reference_label is not None else None   # refused before any work
    tissue_atlas = read_tissue_atlas(atlas) if atlas is not None else None
    device = ctx.torch_device()
    t0 = time.perf_counter()
    model, info = ctx.model(f"personalized:{base_model}:{adapter}:{device}",
                            lambda: load_with_adapter(adapter, base_model, device))
    t1 = time.perf_counter()
    volumes = {str(m): read_volume(p, str(m)) for m, p in images.items()}
    t2 = time.perf_counter()
    result = segment_volumes(volumes, adapter, device, ctx.progress, model=model, resample=resample,
                             ttp_steps=ttp_steps, refine=refine, atlas=tissue_atlas, atlas_weight=atlas_weight,
                             return_probabilities=probabilities)
    label, probs = result if probabilities else (result, None)
    t3 = time.perf_counter()
    segments = label_segments(label)
    label.metadata["segments"] = segments
    outputs = write_named_labels(label, out)
    if probs is not None:
        outputs["probabilities"] = write_volume(probs, Path(out).with_name(_stem(out) + ".probabilities.nii.gz"))
    metrics = {"segments": segments, "modalities": list(label.metadata.get("modalities", [])),
               "adapter": info.get("adapter") or "none", "base_model": info.get("base_model"),
               "working_spacing_mm": label.metadata.get("working_spacing_mm"),
               "refine": label.metadata.get("refine"), "atlas": label.metadata.get("atlas")}
    quality = label.metadata.get("quality") or {}
    metrics.update({"volumes_ml": quality.get("volumes_ml"), "confidence": quality.get("confidence"),
                    "warnings": list(quality.get("warnings") or [])})
    if reference is not None:
        from multimodalgen.dice import dice_scores

        metrics["dice"] = dice_scores(label, reference)
    return Result(outputs, metrics, {"load_model": t1 - t0, "read": t2 - t1, "segment": t3 - t2,
                                     "ttp": float(label.metadata.get("ttp_seconds") or 0.0),
                                     "write": time.perf_counter() - t3})


def _stem(path) -> str:
    from multimodalgen.io import labels_sidecar

    return labels_sidecar(path).name[: -len(".labels.json")]


def write_cases_csv(cases: list[dict], user_csv: str | None, target: Path) -> int:
    """One CASES.csv (absolute paths) from the user's CASES.csv (relative paths resolved against its folder)
    and cases given as {images: {modality: path}, label: path}. Returns the number of cases."""
    rows: list[dict[str, str]] = []
    if user_csv:
        base = Path(user_csv).resolve().parent
        with open(user_csv, newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                rows.append({k.strip(): (str((base / v.strip()).resolve()) if v and v.strip() else "")
                             for k, v in row.items() if k})
    for case in cases:
        if not isinstance(case.get("images"), dict) or not case.get("label"):
            raise UserInputError("invalid training case", expected="{images: {modality: path}, label: path}",
                                 got=repr(case)[:80])
        row = {str(m): str(p) for m, p in case["images"].items()}
        row["label"] = str(case["label"])
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


def finetune_files(*, out: Path, ctx: RunContext, cases: list | None = None, cases_csv=None,
                   base_model: str | None = None, labels: list | None = None, method: str | None = None,
                   steps: int | None = None, crop: int | None = None, lr: float | None = None,
                   calib_steps: int | None = None, val_fraction: float | None = None, patience: int | None = None,
                   seed: int | None = None, resample: bool = False) -> Result:
    """The `finetune` verb: fine-tune an adapter folder `out` (its name is the adapter's name) from CASES.csv
    and/or cases {images: {modality: path}, label: path}; unset settings take `FinetuneConfig`'s defaults."""
    import dataclasses
    import tempfile

    from multimodalgen.personalized.finetune import FinetuneConfig, finetune

    out = Path(out)
    if not out.name or out.name in (".", "..") or any(c in out.name for c in "/\\:"):
        raise UserInputError("invalid adapter name", expected="a plain name such as site-adapter", got=repr(out.name))
    given = {"method": method, "steps": steps, "crop": crop, "lr": lr, "calib_steps": calib_steps,
             "val_fraction": val_fraction, "patience": patience, "seed": seed}
    cfg = dataclasses.replace(FinetuneConfig(), **{k: v for k, v in given.items() if v is not None})
    t0 = time.perf_counter()
    import torch

    torch.manual_seed(cfg.seed)  # adapter initialisation: same seed, same adapter, whichever door and process
    with tempfile.TemporaryDirectory(prefix=".cases-") as tmp:
        csv_path = Path(cases_csv) if cases_csv and not cases else Path(tmp) / "cases.csv"  # provenance: the user's
        count = write_cases_csv(list(cases or []), str(cases_csv) if cases_csv else None, Path(tmp) / "cases.csv")
        folder = finetune(csv_path, out, cfg, base_model=base_model, labels=tuple(labels) if labels else None,
                          device=ctx.torch_device(), progress=ctx.progress, resample=resample, name=out.name)
    size = sum(p.stat().st_size for p in Path(folder).iterdir() if p.is_file())
    return Result({"adapter": Path(folder)}, {"adapter_name": out.name, "cases": count, "size_bytes": size},
                  {"finetune": time.perf_counter() - t0})
