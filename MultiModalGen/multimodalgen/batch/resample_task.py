"""Verb `resample`: bring every input of a study to isotropic spacing (a common cohort preprocessing step).

Each input column `c` is read, resampled to an isotropic grid of `spacing` mm that keeps its orientation and field
of view (`multimodalgen.resample.resample_isotropic`: images linear, label columns nearest-neighbour), and written
to `D/<study_id>/<c>.<format>`. Metrics per input: original shape and spacing, new shape, value range.
It needs no model, so it is also what the batch tests and the throughput benchmark run.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from multimodalgen.batch.manifest import file_name, is_label_column
from multimodalgen.io import read_label, read_volume, write_label, write_volume
from multimodalgen.resample import resample_isotropic
from multimodalgen.verbs.result import Result, RunContext


def resample_files(images: dict[str, str], *, out: Path, ctx: RunContext, spacing: float = 1.0,
                   format: str | None = None) -> Result:
    """Resample each input {column: path} to `spacing` mm isotropic into folder `out` as `<column>.<format>`."""
    suffix = "." + (format or "nii.gz")
    inputs, out_dir = images, Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    columns = [file_name(str(c), "image name", "resample") for c, path in inputs.items() if path]
    outputs: dict[str, Path] = {}
    metrics: dict[str, object] = {}
    timings = {"read": 0.0, "resample": 0.0, "write": 0.0}
    for index, column in enumerate(columns):
        ctx.progress.update("resample", index / max(1, len(columns)), column)
        label = is_label_column(column)
        t0 = time.perf_counter()
        volume = read_label(inputs[column]) if label else read_volume(inputs[column], allow_channels=True)
        t1 = time.perf_counter()
        result = resample_isotropic(volume, spacing, "nearest" if label else "linear")
        t2 = time.perf_counter()
        name = f"{column}{suffix}"
        (write_label if label else write_volume)(result, out_dir / name)
        t3 = time.perf_counter()
        outputs[column] = out_dir / name
        timings["read"] += t1 - t0
        timings["resample"] += t2 - t1
        timings["write"] += t3 - t2
        metrics[f"{column}_shape_in"] = "x".join(str(s) for s in volume.shape3d)
        metrics[f"{column}_spacing_in"] = "x".join(f"{s:.4g}" for s in volume.spacing)
        metrics[f"{column}_shape_out"] = "x".join(str(s) for s in result.shape3d)
        if label:
            metrics[f"{column}_n_labels"] = int(np.count_nonzero(np.unique(result.array)))
        else:
            metrics[f"{column}_mean"] = round(float(np.mean(result.array)), 6)
    ctx.progress.update("resample", 1.0, "done")
    return Result(outputs, metrics, timings)
