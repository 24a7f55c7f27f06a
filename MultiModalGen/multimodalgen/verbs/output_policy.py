"""The output policy of every verb, applied once by `run_verb` before a driver runs: an output never replaces an
input. An output that resolves to an input (same path, or the same file through a symlink or hard link) is a
one-line `UserInputError` (exit 2 on the command line). Writes themselves are atomic through
`multimodalgen.io.atomic_path` (temporary file in the target folder, fsync, rename; nothing left on error).
"""

from __future__ import annotations

import os
from pathlib import Path

from multimodalgen.errors import UserInputError

#: Files a folder-output verb writes into its folder (besides these, `finetune` owns its whole folder).
REGISTER_OUTPUTS = ("transform.h5", "inverse_transform.h5", "displacement.nii.gz", "warped.nii.gz",
                    "warped_labels.nii.gz", "report.json", "overlay.png")


def planned_outputs(verb, out: Path, params: dict) -> list[Path]:
    """The paths verb `verb` will write for `params` into `out` (the main output, side files, folder contents)."""
    if verb.name == "register":
        return [out / name for name in REGISTER_OUTPUTS]
    if verb.name == "resample":
        suffix = params.get("format") or "nii.gz"
        return [out / f"{column}.{suffix}" for column in params.get("images", {})]
    if verb.output == "dir":
        return [out]
    from multimodalgen.io.writers import labels_sidecar

    return [out, labels_sidecar(out)]


def _same(a: Path, b: Path) -> bool:
    try:
        if a.resolve() == b.resolve():
            return True
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def _inside(path: Path, folder: Path) -> bool:
    try:
        return folder.resolve() in path.resolve().parents
    except OSError:
        return False


def refuse_output_over_inputs(out: Path, verb, inputs: list[str], params: dict | None = None) -> None:
    """Raise UserInputError when an output of `verb` at `out` would replace one of `inputs`."""
    targets = planned_outputs(verb, Path(out), params or {})
    for source in inputs:
        src = Path(source)
        for target in targets:
            if _same(src, target) or (verb.output == "dir" and target == Path(out) and _inside(src, target)):
                raise UserInputError(f"the output {target} would overwrite the input {source}",
                                     expected="an output path that is not one of the inputs",
                                     fix="choose another output name or folder")
