"""Verb `convert`: one image or label map to another format, optionally resampled or reoriented (file level)."""

from __future__ import annotations

import time
from pathlib import Path

from multimodalgen.errors import UserInputError
from multimodalgen.verbs.result import Result, RunContext


def convert_file(input, *, out: Path, ctx: RunContext, label: bool = False, reference=None,
                 spacing: float | None = None, orient: str | None = None) -> Result:
    """Read `input`, optionally resample onto `reference`'s grid or to isotropic `spacing` mm (linear; nearest
    for `label`), reorient exactly to `orient` (e.g. "RAS", "LPS"), and write `out` (format from its name).

    Returns outputs {"output": out}; metrics shape (array shape, channels first) and spacing_mm (i, j, k).
    """
    from multimodalgen.io import read_label, read_volume, write_label, write_volume
    from multimodalgen.resample import reorient, resample_isotropic, resample_like

    if reference and spacing:
        raise UserInputError("--reference and --spacing both given", expected="one of them",
                             fix="drop one of the two options")
    t0 = time.perf_counter()
    volume = read_label(input) if label else read_volume(input)
    order = "nearest" if label else "linear"
    ctx.progress.update("convert", 0.2, "read")
    t1 = time.perf_counter()
    if reference:
        volume = resample_like(volume, read_volume(reference, allow_channels=True), order)
    elif spacing:
        volume = resample_isotropic(volume, spacing, order)
    if orient:
        volume = reorient(volume, orient)
    ctx.progress.update("convert", 0.7, "write")
    t2 = time.perf_counter()
    (write_label if label else write_volume)(volume, out)
    ctx.progress.update("convert", 1.0, "done")
    return Result({"output": Path(out)}, {"shape": list(volume.array.shape),
                                          "spacing_mm": volume.spacing.round(6).tolist()},
                  {"read": t1 - t0, "resample": t2 - t1, "write": time.perf_counter() - t2})
