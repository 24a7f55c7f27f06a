"""File-level registration: read inputs, register, write every output atomically as one set.

Outputs in `out_dir`: the names chosen with `outputs` (see `outputs.py`; conventions in `contract.py` and
`export.py`). They are first written into a hidden temporary folder inside `out_dir` and moved into
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


def provenance(encoder_used: str | None, **options) -> dict:
    """What produced the outputs: package version, every option, the models used with their sha256.
    `encoder_used`: the encoder spec the features used ("default" = the default encoder), None when none was used."""
    import multimodalgen
    from multimodalgen.encoder.channels import parse_encoder_spec
    from multimodalgen.encoder.weights import DEFAULT_ENCODER, encoder_dir

    models = {}
    if encoder_used:
        import json

        name, group = parse_encoder_spec(None if encoder_used == "default" else encoder_used)
        data = json.loads((encoder_dir(name or DEFAULT_ENCODER) / "config.json").read_text(encoding="utf-8"))
        models["encoder"] = {"name": data.get("name"), "sha256": data.get("sha256"), "channel_group": group}
    return {"package": "multimodalgen", "version": multimodalgen.__version__, "options": options,
            "models": models}


def register_files(fixed, moving, out, *, ctx: RunContext | None = None, moving_labels=None, fixed_labels=None,
                   fixed_mask=None, moving_mask=None, mode: str | None = None, preset: str | None = None,
                   init: str | None = None, overlay: bool = True, resample: bool = True,
                   diffeomorphic: bool | None = None, inverse_consistent: bool | None = None,
                   moving_segments: list | None = None, outputs=None, features: str | None = None,
                   encoder: str | None = None) -> Result:
    """The `register` verb: register image files and write the chosen outputs into folder `out` as one set.

    Args:
        fixed, moving: image paths (NIfTI, NRRD, MHA, DICOM folder).
        out: output folder (created; existing outputs of the same names are replaced).
        ctx: device, progress and warm cache (`RunContext`).
        moving_labels: optional label map on the moving grid, warped with nearest neighbour.
        fixed_labels: optional label map on the fixed grid: Dice of the warped labels against it (metrics).
        fixed_mask, moving_mask: optional masks on their image's grid.
        mode, preset, init: see `register_volumes` (defaults deformable, fast, moments).
        outputs: output names to write (see `outputs.OUTPUT_FILES`; None = `outputs.DEFAULT_OUTPUTS`).
        overlay, resample: False leaves overlay.png / warped.nii.gz out of the default set.
        moving_segments: optional [{label, name, color}] of the moving labels, kept on warped_labels.
        features, encoder: "mind" (default) or "mind+encoder" with the encoder NAME[:GROUP] (`encoder.channels`).

    Returns:
        `Result`: outputs {name: path} of the written files (transform.h5: ITK, LPS, fixed -> moving;
        displacement.nii.gz: T(x) - x, LPS mm components, fixed grid, float32); metrics = the report (4x4 RAS
        fixed -> moving `affine`, similarity, Jacobian statistics, Dice, bytes written, I/O share); timings in
        seconds per phase (read, prepare, features, linear, deformable, export, write).
    """
    import numpy as np

    from multimodalgen.io import write_json, write_volume
    from multimodalgen.registration.engine import register_volumes
    from multimodalgen.registration.export import (displacement_volume, inverse_sitk_transform, jacobian_determinant,
                                                   to_sitk_transform, warp_volume)
    from multimodalgen.registration.outputs import (OUTPUT_FILES, as_moving_dtype, quantize_field, select_outputs,
                                                    write_itk_transform, write_nifti_like_fixed)

    ctx = ctx or RunContext()
    progress = ctx.progress
    mode, preset, init = mode or "deformable", preset or "fast", init or "moments"
    wanted = select_outputs(outputs, has_labels=moving_labels is not None, overlay=overlay, resample=resample)
    t_start = time.perf_counter()
    import torch  # noqa: F401  (timed on its own: the first import costs 1-3 s, once per process)

    t_import = time.perf_counter() - t_start
    t0 = time.perf_counter()
    vols = _read_inputs(fixed, moving, moving_labels, fixed_mask, moving_mask)
    t_read = time.perf_counter() - t0
    result = register_volumes(vols["fixed"], vols["moving"], mode=mode, preset=preset,
                              fixed_mask=vols["fixed_mask"], moving_mask=vols["moving_mask"], init=init,
                              device=ctx.torch_device(), progress=progress, diffeomorphic=diffeomorphic,
                              inverse_consistent=inverse_consistent, features=features, encoder=encoder)
    report = result.report
    timings = report["timings_s"]
    report["affine"] = np.asarray(result.affine, dtype=np.float64).round(10).tolist()
    report["inputs"] = {k: str(v) for k, v in (("fixed", fixed), ("moving", moving), ("moving_labels", moving_labels),
                                               ("fixed_labels", fixed_labels), ("fixed_mask", fixed_mask),
                                               ("moving_mask", moving_mask)) if v}
    timings["read"] = round(t_read, 3)
    timings["import_torch"] = round(t_import, 3)
    report["provenance"] = provenance(report.get("features", {}).get("encoder"), features=features or "mind",
                                      encoder=encoder, mode=mode,
                                      preset=preset, init=init, diffeomorphic=diffeomorphic,
                                      inverse_consistent=inverse_consistent, outputs=list(wanted),
                                      device=str(ctx.torch_device()))
    t_export = time.perf_counter()
    write_s = 0.0
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".register-", dir=out_dir))

    def write(name, writer, *args, **kwargs):  # timed: file I/O only (compression included)
        nonlocal write_s
        progress.check_cancelled()
        t = time.perf_counter()
        writer(*args, **kwargs)
        write_s += time.perf_counter() - t

    try:
        _jacobian_report(result, report, jacobian_determinant)
        forward = to_sitk_transform(result)
        if "transform" in wanted:
            write("transform", write_itk_transform, forward, tmp / OUTPUT_FILES["transform"])
        if "inverse" in wanted:
            inverse = inverse_sitk_transform(forward, result)
            write("inverse", write_itk_transform, inverse, tmp / OUTPUT_FILES["inverse"])
        if "displacement" in wanted and result.displacement is not None:
            field = displacement_volume(result)
            field = field.with_array(quantize_field(field.array))
            write("displacement", write_volume, field, tmp / OUTPUT_FILES["displacement"])
        warped = None
        if {"warped", "overlay"} & set(wanted):
            progress.check_cancelled()
            warped = warp_volume(result, vols["moving"], "linear")
        if "warped" in wanted:
            stored = warped.with_array(as_moving_dtype(warped.array, vols["moving"].array.dtype))
            write("warped", write_nifti_like_fixed, stored, tmp / OUTPUT_FILES["warped"], fixed)
        if vols["moving_labels"] is not None and ("warped_labels" in wanted or fixed_labels is not None):
            warped_labels = warp_volume(result, vols["moving_labels"], "nearest")
            if moving_segments:
                warped_labels.metadata["segments"] = list(moving_segments)
            if "warped_labels" in wanted:
                write("warped_labels", write_nifti_like_fixed, warped_labels, tmp / OUTPUT_FILES["warped_labels"],
                      fixed, label=True)
            if fixed_labels is not None:
                from multimodalgen.dice import dice_scores
                from multimodalgen.io import read_label

                t = time.perf_counter()
                reference = read_label(fixed_labels)
                timings["read"] = round(timings["read"] + time.perf_counter() - t, 3)
                report["dice"] = dice_scores(warped_labels, reference)
        if "overlay" in wanted:
            from multimodalgen.registration.overlay import save_before_after_png
            from multimodalgen.resample import resample_like
            from multimodalgen.verbs.messages import registration_mode

            before = resample_like(vols["moving"], vols["fixed"])  # a figure: rendering counts as export, not I/O
            save_before_after_png(tmp / OUTPUT_FILES["overlay"], vols["fixed"], before, warped,
                                  f"{Path(str(moving)).name} -> {Path(str(fixed)).name} ({registration_mode(report)}, {preset})",
                                  overlay_caption(report, Path(str(fixed)).name, Path(str(moving)).name))
        names = sorted([p.name for p in tmp.iterdir()] + (["report.json"] if "report" in wanted else []))
        report["outputs"] = names
        report["bytes_written"] = int(sum(p.stat().st_size for p in tmp.iterdir()))
        t = time.perf_counter()
        timings["export"] = round(t - t_export - write_s, 3)
        timings["write"] = round(write_s, 3)
        timings["end_to_end_in_process"] = round(t - t_start, 3)
        report["io_share"] = round((timings["read"] + timings["write"]) / max(t - t_start, 1e-9), 3)
        report["timings_note"] = (
            "seconds per phase: import_torch (first torch import), read (inputs), prepare, features, linear, "
            "deformable (registration; 'total' = the whole registration), export (warping, inverse, Jacobian, "
            "overlay figure), write (image and transform files, compression included; report.json itself not "
            "counted); io_share = (read + write) / end_to_end_in_process")
        if "report" in wanted:
            write_json(report, tmp / OUTPUT_FILES["report"])
        progress.check_cancelled()
        for item in sorted(tmp.iterdir()):
            os.replace(item, out_dir / item.name)
    finally:
        with contextlib.suppress(OSError):
            shutil.rmtree(tmp)
    written = {name: out_dir / OUTPUT_FILES[name] for name in wanted if (out_dir / OUTPUT_FILES[name]).name in names}
    metrics = {k: v for k, v in report.items() if k not in ("inputs", "outputs", "timings_s", "timings_note")}
    return Result(written, metrics, dict(timings))


def overlay_caption(report: dict, fixed_name: str, moving_name: str) -> str:
    """The overlay's caption: the case and its numbers (`verbs.messages.registration_numbers`)."""
    from multimodalgen.verbs.messages import registration_numbers

    case = (f"Case {moving_name} (moving) onto {fixed_name} (fixed), moving resampled on the fixed grid before and "
            "after registration")
    return "; ".join([case] + registration_numbers(report)) + "."


def _jacobian_report(result, report: dict, jacobian_determinant) -> None:
    """det(J) of T on the displacement grid (det(A) * det(I + grad u)): non-positive fraction, min, max."""
    import numpy as np

    det_a = float(np.linalg.det(result.affine[:3, :3]))
    if result.displacement is None:
        report["jacobian"] = {"nonpositive_fraction": float(det_a <= 0), "min": det_a, "max": det_a}
        return
    det = jacobian_determinant(result.displacement, result.field_affine) * det_a
    report["jacobian"] = {"nonpositive_fraction": float(np.mean(det <= 0)), "min": float(det.min()),
                          "max": float(det.max()), "grid": "displacement grid"}
