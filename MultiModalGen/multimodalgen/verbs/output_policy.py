"""The output policy of every verb, applied once by `run_verb` before a driver runs (so before any computation):
an output never replaces an input, an output folder never holds an input, and every output can be written. An
output that resolves to an input (same path, or the same file through a symlink or hard link), an output folder
(verbs writing a folder of outputs) that is the folder of an input or one of its parent folders, or an output
whose folder cannot be created or written (a path
component that is a file, no permission, a read-only file system), or a file output that is an existing folder, is
a one-line `UserInputError` (exit 2 on the command line) and nothing is written. Writes themselves are atomic through
`multimodalgen.io.atomic_path` (temporary file in the target folder, fsync, rename; nothing left on error).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from multimodalgen.errors import UserInputError


def planned_outputs(verb, out: Path, params: dict) -> list[Path]:
    """The paths verb `verb` will write for `params` into `out` (the main output, side files, folder contents)."""
    if verb.name == "register":  # the outputs selected (an invalid selection is refused here, before any work)
        from multimodalgen.registration.outputs import OUTPUT_FILES, select_outputs

        names = select_outputs(params.get("outputs"), has_labels=params.get("moving_labels") is not None,
                               overlay=params.get("overlay", True), resample=params.get("resample", True))
        return [out / OUTPUT_FILES[name] for name in names]
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
    """Raise UserInputError when an output of `verb` at `out` would replace one of `inputs`, or when `verb` writes
    a folder of outputs and `out` is (or is above) the folder of an input: its outputs, temporary files and any
    later clean-up would then live among the user's inputs."""
    out = Path(out)
    if verb.output == "dir":
        for source in inputs:
            src = Path(source)
            if _same(src, out) or _inside(src, out):
                raise UserInputError(f"the output folder {out} contains the input {source}",
                                     expected="an output folder that holds none of the inputs",
                                     fix=f"choose a new or empty folder, e.g. {out / verb.name}")
    targets = planned_outputs(verb, out, params or {})
    for source in inputs:
        src = Path(source)
        for target in targets:
            if _same(src, target):
                raise UserInputError(f"the output {target} would overwrite the input {source}",
                                     expected="an output path that is not one of the inputs",
                                     fix="choose another output name or folder")


def _nearest_existing(path: Path) -> Path:
    """`path` itself when it exists, else its closest existing ancestor (the folder the writer would create in)."""
    current = path
    while not current.exists() and current != current.parent:
        current = current.parent
    return current


def _unwritable(path: Path, is_folder: bool) -> tuple[str, str] | None:
    """(what is wrong, fix) when `path` (a file to write, or a folder to write into) cannot be written, else None.

    Nothing is left behind: the check creates no folder; its probe file in an existing folder is removed at once.
    """
    folder = path if is_folder else path.parent
    if not is_folder and path.is_dir():
        return f"the output {path} is an existing folder", "give a file name, e.g. inside that folder"
    existing = _nearest_existing(folder)
    if not existing.is_dir():
        return (f"cannot create the output folder {folder}: {existing} is a file, not a folder",
                "choose an output path whose folders are folders")
    try:
        fd, probe = tempfile.mkstemp(prefix=".multimodalgen-write-check.", dir=existing)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        where = f"cannot write into {existing}" if existing == folder else \
            f"cannot create the output folder {folder}: writing into {existing} fails"
        return (f"{where} ({exc.strerror or exc})",
                "choose a folder you can write to (check its permissions and that the disk is not read-only)")
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"cannot write into {existing}: permission denied", "choose a folder you can write to"
    return None


def check_outputs_writable(out: Path, verb, params: dict | None = None) -> None:
    """Raise UserInputError (one line, exit 2) when an output of `verb` at `out` cannot be written; before any
    computation, so an unwritable destination costs nothing and leaves nothing."""
    out = Path(out)
    targets = [out] if verb.output == "dir" else planned_outputs(verb, out, params or {})
    for target in targets:
        problem = _unwritable(target, is_folder=verb.output == "dir")
        if problem is not None:
            what, fix = problem
            raise UserInputError(what, expected="an output location that can be written", fix=fix)
