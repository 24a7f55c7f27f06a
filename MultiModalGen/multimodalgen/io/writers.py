"""Writing volumes and label maps atomically: write to a temporary file in the same folder, then rename.

A failure (disk full, cancel, crash) never leaves a half-written file under the final name.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np

from multimodalgen.errors import UserInputError
from multimodalgen.io.segmentation import is_segmentation_path, write_segmentation
from multimodalgen.io.sitk_bridge import volume_to_sitk
from multimodalgen.volume import Volume, check_label_array

WRITABLE_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".mha", ".mhd", ".seg.nrrd")


def _suffix(path: Path) -> str:
    name = path.name.lower()
    for suffix in sorted(WRITABLE_SUFFIXES, key=len, reverse=True):
        if name.endswith(suffix):
            return suffix
    raise UserInputError(f"cannot write {path.name}: unknown file type",
                         expected=f"one of {', '.join(WRITABLE_SUFFIXES)}", got=path.suffix or "no extension",
                         fix="choose an output name ending in .nii.gz, .nrrd, .mha or .seg.nrrd")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path` with the same suffix; on success fsync it and rename it to `path`.

    On any exception the temporary file is removed and `path` is left untouched. An OS error while writing (disk
    full, file too large, read-only file system, no permission) becomes a one-line `UserInputError` (exit 2).
    """
    final = Path(path)
    tmp: Path | None = None
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        suffix = "".join(final.suffixes[-2:]) if final.name.lower().endswith((".nii.gz", ".seg.nrrd")) \
            else final.suffix
        fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=f".part{suffix}", dir=final.parent)
        os.close(fd)
        tmp = Path(tmp_name)
        os.chmod(tmp, 0o666 & ~_current_umask())  # mkstemp makes 0600 files; outputs get the usual permissions
        yield tmp
        if not tmp.is_file():
            raise UserInputError(f"nothing was written to {final}", fix="check the disk and the output format")
        _fsync(tmp)
        os.replace(tmp, final)
        tmp = None
        _fsync(final.parent)
    except OSError as exc:
        raise UserInputError(f"cannot write {final}: {exc.strerror or exc}",
                             expected="a writable folder with enough free space",
                             fix="free disk space, or choose another output folder") from exc
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                tmp.unlink()


def _fsync(path: Path) -> None:
    """Flush `path` (a file, or a folder's entry list) to the disk; folders that cannot be opened are skipped."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        if path.is_dir():
            return
        raise
    try:
        os.fsync(fd)
    except OSError:
        if not path.is_dir():
            raise
    finally:
        os.close(fd)


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_volume(volume: Volume, path: str | os.PathLike, *, compress: bool = True) -> Path:
    """Write a Volume (scalar or `(C, I, J, K)`) atomically; the format follows the file name. Returns the path."""
    import SimpleITK as sitk

    path = Path(path)
    suffix = _suffix(path)
    if suffix == ".seg.nrrd":
        return write_label(volume, path)
    image = volume_to_sitk(volume)
    if suffix == ".mhd":
        raise UserInputError("writing .mhd (two files) is not supported", expected=".mha (single file)",
                             fix="use .mha instead")
    with atomic_path(path) as tmp:
        try:
            sitk.WriteImage(image, str(tmp), useCompression=compress)
        except RuntimeError as exc:  # ITK reports disk-full and permission errors as RuntimeError
            raise OSError(f"the image writer failed ({str(exc).strip().splitlines()[-1][:120]})") from exc
        _verify_written(tmp, suffix, sitk.GetArrayViewFromImage(image).nbytes)
    return path


def _verify_written(path: Path, suffix: str, data_bytes: int) -> None:
    """Cheap check that the whole image reached the disk (ITK's NIfTI writer only prints short writes): an
    uncompressed NIfTI holds its header plus every data byte; a gzip stream decompresses to its end."""
    if suffix == ".nii":
        complete = path.stat().st_size >= 348 + data_bytes
    elif suffix == ".nii.gz":
        import gzip
        import zlib

        total = 0
        try:
            with gzip.open(path, "rb") as handle:
                while chunk := handle.read(1 << 22):
                    total += len(chunk)
        except (EOFError, OSError, zlib.error):
            total = -1
        complete = total >= 348 + data_bytes
    else:
        complete = path.stat().st_size > 0
    if not complete:
        raise OSError("the file was cut short (short write; disk full or file size limit)")


def write_label(volume: Volume, path: str | os.PathLike) -> Path:
    """Write a label map atomically: `.seg.nrrd` as a Slicer segmentation, other formats as an integer image."""
    path = Path(path)
    labels = check_label_array(volume.array)
    label_volume = Volume(labels, volume.affine, "LABEL", volume.metadata)
    if is_segmentation_path(str(path)):
        with atomic_path(path) as tmp:
            write_segmentation(label_volume, str(tmp))
        return path
    return write_volume(label_volume, path)


def write_json(data: dict, path: str | os.PathLike) -> Path:
    """Write JSON atomically (indent 2, numpy scalars converted)."""
    import json

    def default(obj):
        if isinstance(obj, (np.integer,)):
            return int(obj)
        if isinstance(obj, (np.floating,)):
            return float(obj)
        if isinstance(obj, np.ndarray):
            return obj.tolist()
        return str(obj)

    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, default=default) + "\n", encoding="utf-8")
    return path


def labels_sidecar(path: str | os.PathLike) -> Path:
    """`<name>.labels.json` beside a label map: its segment names, colours and terminology for formats that cannot
    hold them (NIfTI, NRRD, MHA)."""
    name = Path(path).name
    for suffix in sorted(WRITABLE_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    return Path(path).with_name(name + ".labels.json")


def write_named_labels(volume: Volume, path: str | os.PathLike) -> dict[str, Path]:
    """Write label map `path` with its `metadata["segments"]` ({label, name, color, terminology}): inside a
    `.seg.nrrd`, else in the `<name>.labels.json` sidecar. Returns {"segmentation": path[, "labels": sidecar]}."""
    outputs = {"segmentation": write_label(volume, path)}
    segments = volume.metadata.get("segments")
    if segments and not is_segmentation_path(str(path)):
        outputs["labels"] = write_json({"segments": list(segments)}, labels_sidecar(path))
    return outputs


def copy_nifti_codes(reference: str | os.PathLike, path: str | os.PathLike) -> None:
    """Give NIfTI `path` the qform/sform codes of NIfTI `reference` (e.g. 2 = aligned, 4 = MNI) when both are NIfTI
    and the grids agree; the file is rewritten atomically. Other formats have no such codes: nothing to do."""
    names = (str(reference).lower(), str(path).lower())
    if not all(n.endswith((".nii", ".nii.gz")) for n in names):
        return
    import nibabel as nib

    ref = nib.load(str(reference)).header
    image = nib.load(str(path))
    codes = int(ref["qform_code"]), int(ref["sform_code"])
    if codes == (int(image.header["qform_code"]), int(image.header["sform_code"])):
        return
    image = nib.Nifti1Image(np.asanyarray(image.dataobj), image.affine, image.header)
    image.set_qform(image.affine, code=codes[0])
    image.set_sform(image.affine, code=codes[1])
    with atomic_path(path) as tmp:
        nib.save(image, str(tmp))
