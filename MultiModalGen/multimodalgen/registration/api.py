"""File-level registration: read inputs, register, write every output atomically as one set.

Outputs in `out_dir` (see `contract.py` and `export.py` for the conventions):
transform.h5, displacement.nii.gz (deformable mode), warped.nii.gz, warped_labels.nii.gz (with moving labels),
report.json, overlay.png. They are first written into a hidden temporary folder inside `out_dir` and moved into
place only when the whole run succeeded: a failure or a cancel leaves no partial output behind.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from pathlib import Path

from multimodalgen.errors import UserInputError
from multimodalgen.verbs.result import Result, RunContext

OUTPUT_NAMES = ("transform.h5", "displacement.nii.gz", "warped.nii.gz", "warped_labels.nii.gz", "report.json",
                "overlay.png")


def _read_inputs(fixed, moving, moving_labels, fixed_mask, moving_mask):
    from multimodalgen.io import read_label, read_volume

    vols = {"fixed": read_volume(fixed, allow_channels=False), "moving": read_volume(moving, allow_channels=False)}
    for name, path in (("moving_labels", moving_labels), ("fixed_mask", fixed_mask), ("moving_mask", moving_mask)):
        vols[name] = read_label(path) if path is not None else None
    if vols["moving_labels"] is not None:
        from multimodalgen.volume import same_grid

        if not same_grid(vols["moving_labels"], vols["moving"], tolerance=1e-2):
            raise UserInputError("the moving labels are not on the moving image's grid",
                                 expected=f"shape {vols['moving'].shape3d}",
                                 got=f"shape {vols['moving_labels'].shape3d}",
                                 fix="give the label map that belongs to the moving image")
    return vols


def provenance(uses_encoder: bool, **options) -> dict:
    """What produced the outputs: package version, every option, the models used with their sha256."""
    import multimodalgen
    from multimodalgen.models.registry import DEFAULT_MODELS, shipped_models_dir

    models = {}
    config = shipped_models_dir() / DEFAULT_MODELS["encoder"] / "config.json"
    if uses_encoder and config.is_file():
        import json

        data = json.loads(config.read_text(encoding="utf-8"))
        models["encoder"] = {"name": data.get("name"), "sha256": data.get("sha256")}
    return {"package": "multimodalgen", "version": multimodalgen.__version__, "options": options,
            "models": models}


def register_files(fixed, moving, out, *, ctx: RunContext | None = None, moving_labels=None, fixed_labels=None,
                   fixed_mask=None, moving_mask=None, mode: str | None = None, preset: str | None = None,
                   init: str | None = None, overlay: bool = True, resample: bool = True,
                   diffeomorphic: bool | None = None, inverse_consistent: bool | None = None,
                   moving_segments: list | None = None) -> Result:
    """The `register` verb: register image files and write every output into folder `out` as one set.

    Args:
        fixed, moving: image paths (NIfTI, NRRD, MHA, DICOM folder).
        out: output folder (created; existing outputs of the same names are replaced).
        ctx: device, progress and warm cache (`RunContext`).
        moving_labels: optional label map on the moving grid, warped with nearest neighbour.
        fixed_labels: optional label map on the fixed grid: Dice of the warped labels against it (metrics).
        fixed_mask, moving_mask: optional masks on their image's grid.
        mode, preset, init: see `register_volumes` (defaults deformable, fast, moments).
        overlay: write overlay.png (matplotlib). resample: write warped.nii.gz.
        moving_segments: optional [{label, name, color}] of the moving labels, kept on warped_labels.

    Returns:
        `Result`: outputs transform.h5 (ITK, LPS), displacement.nii.gz (deformable: T(x) - x, LPS mm components,
        fixed grid), warped.nii.gz, warped_labels.nii.gz, report.json, overlay.png; metrics = the report (4x4 RAS
        fixed -> moving `affine`, similarity, Jacobian statistics, Dice); timings in seconds.
    """
    import numpy as np

    from multimodalgen.io import write_json, write_label, write_volume
    from multimodalgen.io.writers import copy_nifti_codes
    from multimodalgen.registration.engine import register_volumes
    from multimodalgen.registration.export import (displacement_volume, jacobian_determinant, warp_volume,
                                                   write_inverse_transform, write_transform)

    ctx = ctx or RunContext()
    progress = ctx.progress
    mode, preset, init = mode or "deformable", preset or "fast", init or "moments"
    t_start = time.perf_counter()
    vols = _read_inputs(fixed, moving, moving_labels, fixed_mask, moving_mask)
    t_read = time.perf_counter() - t_start
    result = register_volumes(vols["fixed"], vols["moving"], mode=mode, preset=preset,
                              fixed_mask=vols["fixed_mask"], moving_mask=vols["moving_mask"], init=init,
                              device=ctx.torch_device(), progress=progress, diffeomorphic=diffeomorphic,
                              inverse_consistent=inverse_consistent)
    report = result.report
    report["affine"] = np.asarray(result.affine, dtype=np.float64).round(10).tolist()
    report["inputs"] = {k: str(v) for k, v in (("fixed", fixed), ("moving", moving), ("moving_labels", moving_labels),
                                               ("fixed_labels", fixed_labels), ("fixed_mask", fixed_mask),
                                               ("moving_mask", moving_mask)) if v}
    report["timings_s"]["read"] = round(t_read, 3)
    report["provenance"] = provenance(report.get("features", {}).get("kind") == "mind+encoder", mode=mode, preset=preset, init=init, diffeomorphic=diffeomorphic,
                                      inverse_consistent=inverse_consistent, overlay=overlay, resample=resample,
                                      device=str(ctx.torch_device()))
    t0 = time.perf_counter()
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".register-", dir=out_dir))
    try:
        dense = result.dense_map()
        grid = result.fixed_affine
        from multimodalgen.volume import grid_world_coordinates

        total = dense - grid_world_coordinates(result.fixed_shape, grid) if result.displacement is not None else None
        write_transform(result, tmp / "transform.h5")
        write_inverse_transform(result, tmp / "inverse_transform.h5")
        if total is not None:
            write_volume(displacement_volume(result, total), tmp / "displacement.nii.gz")
            det = jacobian_determinant(total, grid)
            report["jacobian"] = {"nonpositive_fraction": float(np.mean(det <= 0)), "min": float(det.min()),
                                  "max": float(det.max())}
        else:
            det_a = float(np.linalg.det(result.affine[:3, :3]))
            report["jacobian"] = {"nonpositive_fraction": float(det_a <= 0), "min": det_a, "max": det_a}
        progress.check_cancelled()
        warped = warp_volume(result, vols["moving"], "linear", dense)
        if resample:
            write_volume(warped, tmp / "warped.nii.gz")
            copy_nifti_codes(fixed, tmp / "warped.nii.gz")  # the fixed image's qform/sform codes
        if vols["moving_labels"] is not None:
            warped_labels = warp_volume(result, vols["moving_labels"], "nearest", dense)
            if moving_segments:
                warped_labels.metadata["segments"] = list(moving_segments)
            write_label(warped_labels, tmp / "warped_labels.nii.gz")
            copy_nifti_codes(fixed, tmp / "warped_labels.nii.gz")
            if fixed_labels is not None:
                from multimodalgen.dice import dice_scores
                from multimodalgen.io import read_label

                report["dice"] = dice_scores(warped_labels, read_label(fixed_labels))
        progress.check_cancelled()
        if overlay:
            from multimodalgen.registration.overlay import save_before_after_png
            from multimodalgen.resample import resample_like

            before = resample_like(vols["moving"], vols["fixed"])
            save_before_after_png(tmp / "overlay.png", vols["fixed"], before, warped,
                                  f"{Path(str(moving)).name} -> {Path(str(fixed)).name} ({mode}, {preset})")
        report["timings_s"]["write"] = round(time.perf_counter() - t0, 3)
        report["timings_s"]["end_to_end_in_process"] = round(time.perf_counter() - t_start, 3)
        report["outputs"] = sorted([p.name for p in tmp.iterdir()] + ["report.json"])
        write_json(report, tmp / "report.json")
        progress.check_cancelled()
        for item in sorted(tmp.iterdir()):
            os.replace(item, out_dir / item.name)
    finally:
        with contextlib.suppress(OSError):
            shutil.rmtree(tmp)
    outputs = {name.split(".")[0]: out_dir / name for name in report["outputs"]}
    metrics = {k: v for k, v in report.items() if k not in ("inputs", "outputs", "timings_s")}
    return Result(outputs, metrics, dict(report["timings_s"]))
