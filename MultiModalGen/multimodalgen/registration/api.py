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
from multimodalgen.progress import Progress

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


def register_files(fixed, moving, out_dir, *, moving_labels=None, fixed_mask=None, moving_mask=None,
                   mode: str = "deformable", preset: str = "fast", init: str = "moments", device="cpu",
                   progress=None, overlay: bool = True, diffeomorphic: bool | None = None,
                   inverse_consistent: bool | None = None) -> dict:
    """Register image files and write the outputs; returns the report (also written as report.json).

    Args:
        fixed, moving: image paths (NIfTI, NRRD, MHA, DICOM folder).
        out_dir: output folder (created; existing outputs of the same names are replaced).
        moving_labels: optional label map on the moving grid, warped with nearest neighbour.
        fixed_mask, moving_mask: optional masks on their image's grid.
        mode, preset, init, device, progress: see `register_volumes`.
        overlay: write overlay.png (matplotlib).
    """
    import numpy as np

    from multimodalgen.io import write_json, write_label, write_volume
    from multimodalgen.registration.engine import register_volumes
    from multimodalgen.registration.export import (displacement_volume, jacobian_determinant, warp_volume,
                                                   write_transform)

    progress = progress or Progress.null()
    mode, preset, init = mode or "deformable", preset or "fast", init or "moments"
    t_start = time.perf_counter()
    vols = _read_inputs(fixed, moving, moving_labels, fixed_mask, moving_mask)
    t_read = time.perf_counter() - t_start
    result = register_volumes(vols["fixed"], vols["moving"], mode=mode, preset=preset,
                              fixed_mask=vols["fixed_mask"], moving_mask=vols["moving_mask"], init=init,
                              device=device, progress=progress, diffeomorphic=diffeomorphic,
                              inverse_consistent=inverse_consistent)
    report = result.report
    report["inputs"] = {k: str(v) for k, v in (("fixed", fixed), ("moving", moving), ("moving_labels", moving_labels),
                                               ("fixed_mask", fixed_mask), ("moving_mask", moving_mask)) if v}
    report["timings_s"]["read"] = round(t_read, 3)
    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".register-", dir=out_dir))
    try:
        dense = result.dense_map()
        grid = result.fixed_affine
        from multimodalgen.volume import grid_world_coordinates

        total = dense - grid_world_coordinates(result.fixed_shape, grid) if result.displacement is not None else None
        write_transform(result, tmp / "transform.h5")
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
        write_volume(warped, tmp / "warped.nii.gz")
        if vols["moving_labels"] is not None:
            write_label(warp_volume(result, vols["moving_labels"], "nearest", dense), tmp / "warped_labels.nii.gz")
        progress.check_cancelled()
        if overlay:
            from multimodalgen.registration.overlay import save_before_after_png
            from multimodalgen.resample import resample_like

            before = resample_like(vols["moving"], vols["fixed"])
            save_before_after_png(tmp / "overlay.png", vols["fixed"], before, warped,
                                  f"{Path(str(moving)).name} -> {Path(str(fixed)).name} ({mode}, {preset})")
        report["timings_s"]["write"] = round(time.perf_counter() - t0, 3)
        report["timings_s"]["end_to_end_in_process"] = round(time.perf_counter() - t_start, 3)
        report["outputs"] = sorted(p.name for p in tmp.iterdir())
        write_json(report, tmp / "report.json")
        progress.check_cancelled()
        for item in sorted(tmp.iterdir()):
            os.replace(item, out_dir / item.name)
    finally:
        with contextlib.suppress(OSError):
            shutil.rmtree(tmp)
    return report
