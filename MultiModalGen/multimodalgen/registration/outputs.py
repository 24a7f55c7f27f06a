"""What `register` writes: the output names a user can choose with `--outputs`, and compact writers for them.

Output names (CLI `--outputs`, verb parameter `outputs`, Slicer) -> files in the output folder:

==============  ======================  ==============================================================================
transform       transform.h5            ITK composite [affine, displacement field] (LPS, fixed -> moving points)
inverse         inverse_transform.h5    T^-1 (moving -> fixed points), ITK composite
displacement    displacement.nii.gz     T(x) - x on the fixed grid, (3, I, J, K) float32 LPS mm (opt-in: large)
warped          warped.nii.gz           the moving image resampled on the fixed grid (fixed qform/sform codes)
warped_labels   warped_labels.nii.gz    the moving labels resampled nearest-neighbour (needs moving labels)
overlay         overlay.png             before/after checkerboard figure
report          report.json             metrics, timings per phase, I/O share, provenance
==============  ======================  ==============================================================================

Default: every output except `displacement` (the dense field on a 1 mm fixed grid is tens of MB and is the same
map as transform.h5). Sizes: the displacement fields inside the ITK files and displacement.nii.gz are rounded to
1/1024 mm (error <= 0.0005 mm) and stored compressed (HDF5 deflate with byte shuffle; gzip), float32 for
displacement.nii.gz; a warped image of an integer-typed moving image keeps its integer type (rounded).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from multimodalgen.errors import UserInputError

#: output name -> file name, in the order they are listed in help texts.
OUTPUT_FILES = {"transform": "transform.h5", "inverse": "inverse_transform.h5", "displacement": "displacement.nii.gz",
                "warped": "warped.nii.gz", "warped_labels": "warped_labels.nii.gz", "overlay": "overlay.png",
                "report": "report.json"}
DEFAULT_OUTPUTS = ("transform", "inverse", "warped", "warped_labels", "overlay", "report")
#: field values are rounded to this step (mm) before compression: 1/1024 mm, exact in binary floating point.
FIELD_QUANTUM_MM = 1.0 / 1024.0


def select_outputs(outputs=None, *, has_labels: bool, overlay: bool = True, resample: bool = True) -> tuple[str, ...]:
    """The output names to write, in `OUTPUT_FILES` order.

    Args:
        outputs: None or "default" (`DEFAULT_OUTPUTS`), "all", or names as a comma-separated string or a list;
            "default" and "all" may be combined with names (e.g. "default,displacement").
        has_labels: moving labels were given (`warped_labels` needs them; by default it is written only then).
        overlay, resample: False drops overlay / warped from the *default* set (older parameters).
    Raises:
        UserInputError: an unknown name, an empty selection, or `warped_labels` asked for without moving labels.
    """
    if outputs is None:
        items = ["default"]
    elif isinstance(outputs, str):
        items = [s.strip() for s in outputs.split(",") if s.strip()]
    else:
        items = [str(s).strip() for s in outputs]
    chosen: set[str] = set()
    explicit: set[str] = set()
    for item in items:
        if item == "default":
            chosen.update(n for n in DEFAULT_OUTPUTS if (n != "overlay" or overlay) and (n != "warped" or resample)
                          and (n != "warped_labels" or has_labels))
        elif item == "all":
            chosen.update(n for n in OUTPUT_FILES if n != "warped_labels" or has_labels)
        elif item in OUTPUT_FILES:
            chosen.add(item)
            explicit.add(item)
        else:
            raise UserInputError(f"unknown registration output {item!r}",
                                 expected="default, all or names among " + ", ".join(OUTPUT_FILES),
                                 got=str(outputs), fix="e.g. --outputs transform,report or --outputs default,displacement")
    if not chosen:
        raise UserInputError("no registration output selected", expected="at least one of " + ", ".join(OUTPUT_FILES),
                             got=str(outputs), fix="e.g. --outputs transform")
    if "warped_labels" in explicit and not has_labels:
        raise UserInputError("output warped_labels needs moving labels", got=str(outputs),
                             fix="give --moving-labels, or leave warped_labels out of --outputs")
    return tuple(n for n in OUTPUT_FILES if n in chosen)


def quantize_field(field: np.ndarray, dtype=np.float32) -> np.ndarray:
    """A displacement field (mm) rounded to `FIELD_QUANTUM_MM` in `dtype` (compresses several times better)."""
    return (np.rint(np.asarray(field, np.float64) / FIELD_QUANTUM_MM) * FIELD_QUANTUM_MM).astype(dtype)


def write_itk_transform(transform, path: str | os.PathLike) -> Path:
    """Write a SimpleITK transform as an ITK HDF5 transform file, displacement fields compressed.

    SimpleITK's writer stores a displacement field as uncompressed float64 (a 2 mm field over a 1 mm head: 22 MB).
    This writes the same file layout (what ITK, SimpleITK, ANTs and Slicer read) with every large parameter
    array rounded to `FIELD_QUANTUM_MM` and deflate-compressed with byte shuffling (HDF5 filters ITK reads
    transparently); without h5py it falls back to SimpleITK's uncompressed writer. Atomic (temporary file + rename).
    """
    import SimpleITK as sitk

    from multimodalgen.io.writers import atomic_path

    try:
        import h5py
    except ImportError:  # optional: the file is then larger, never different in content
        h5py = None
    path = Path(path)
    with atomic_path(path) as tmp:
        sitk.WriteTransform(transform, str(tmp))
        if h5py is not None and path.suffix.lower() == ".h5":
            _compress_h5(h5py, tmp)
    return path


def _compress_h5(h5py, path: Path) -> None:
    """Rewrite an ITK HDF5 transform file in place with its large parameter arrays quantised and compressed."""
    tmp = path.with_name(path.name + ".z")
    try:
        with h5py.File(path, "r") as src, h5py.File(tmp, "w") as dst:
            def copy(name, obj):
                if isinstance(obj, h5py.Group):
                    dst.require_group(name)
                elif obj.shape and obj.dtype.kind == "f" and obj.size > 256:  # fields, not the 12 affine parameters
                    dst.create_dataset(name, data=quantize_field(obj[()], np.float64), compression="gzip",
                                       compression_opts=1, shuffle=True, chunks=(min(obj.size, 1 << 18),))
                else:
                    src.copy(obj, dst, name=name)
            for key in src:
                if isinstance(src[key], h5py.Group):
                    dst.require_group(key)
                    src[key].visititems(lambda n, o, k=key: copy(f"{k}/{n}", o))
                else:
                    src.copy(src[key], dst, name=key)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_nifti_like_fixed(volume, path: str | os.PathLike, fixed_path, *, label: bool = False) -> Path:
    """Write a fixed-grid output once, keeping the fixed NIfTI's qform/sform codes (else through `write_volume`).

    Images of integer-typed moving images keep their integer type (rounded); labels keep their type.
    """
    from multimodalgen.io import write_label, write_volume

    path = Path(path)
    fixed = str(fixed_path).lower()
    if label or not (path.name.endswith((".nii", ".nii.gz")) and fixed.endswith((".nii", ".nii.gz"))):
        (write_label if label else write_volume)(volume, path)
        if fixed.endswith((".nii", ".nii.gz")) and path.name.endswith((".nii", ".nii.gz")):
            from multimodalgen.io.writers import copy_nifti_codes

            copy_nifti_codes(fixed_path, path)
        return path
    import nibabel as nib

    from multimodalgen.io.writers import atomic_path

    ref = nib.load(str(fixed_path)).header
    image = nib.Nifti1Image(np.asarray(volume.array), volume.affine)
    image.set_qform(volume.affine, code=int(ref["qform_code"]))
    image.set_sform(volume.affine, code=int(ref["sform_code"]))
    with atomic_path(path) as tmp:
        nib.save(image, str(tmp))
    return path


def as_moving_dtype(array: np.ndarray, moving_dtype) -> np.ndarray:
    """A linearly resampled image in the moving image's integer type (rounded, clipped), or float32."""
    dtype = np.dtype(moving_dtype)
    if dtype.kind in "iu" and dtype.itemsize <= 4:
        info = np.iinfo(dtype)
        return np.clip(np.rint(array), info.min, info.max).astype(dtype)
    return np.asarray(array, np.float32)
