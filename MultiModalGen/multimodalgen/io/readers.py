"""Reading volumes and label maps from NIfTI, NRRD, MHA/MHD, DICOM series folders and Slicer `.seg.nrrd`.

Every reader validates on purpose (missing/corrupt file, 2D, 4D, zero size, sheared axes, NaN/Inf, non-integer
labels, sizes that would not fit in memory) and raises `UserInputError` with what was expected and the fix.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from multimodalgen.errors import UserInputError
from multimodalgen.io.dicom_objects import refuse_non_image_dicom, refuse_non_image_folder
from multimodalgen.io.memory import check_fits_in_memory
from multimodalgen.io.segmentation import is_segmentation_path, read_segmentation
from multimodalgen.io.sitk_bridge import affine_ras_from_lps, sitk_to_volume
from multimodalgen.volume import Volume, check_finite, check_label_array

#: File endings the readers accept (DICOM is a folder).
SUPPORTED_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd", ".seg.nrrd", ".dcm")

#: Bytes per voxel assumed by the memory estimate (float32 working copy + the read buffer).
_BYTES_PER_VOXEL_ESTIMATE = 8


def _require_existing(path: Path) -> None:
    if not path.exists():
        raise UserInputError(f"file not found: {path}", expected="an existing image file or DICOM folder",
                             fix="check the path (relative paths are relative to the current folder)")
    if path.is_file() and path.stat().st_size == 0:
        raise UserInputError(f"the file is empty (0 bytes): {path}", expected="an image file",
                             fix="re-export or re-copy the file")


_DATA_FILE = {".mhd": re.compile(r"^\s*ElementDataFile\s*=\s*(.*?)\s*$", re.M),
              ".mha": re.compile(r"^\s*ElementDataFile\s*=\s*(.*?)\s*$", re.M),
              ".nhdr": re.compile(r"^\s*data ?file\s*:\s*(.*?)\s*$", re.M | re.I),
              ".nrrd": re.compile(r"^\s*data ?file\s*:\s*(.*?)\s*$", re.M | re.I)}


def check_data_file_reference(path: Path) -> None:
    """A header that keeps its voxels in another file (MetaImage `ElementDataFile`, NRRD `data file`) may only name
    a plain file beside it: never a path elsewhere, a parent folder, a file list or a pattern (a header must not
    make the reader open files it was not given, e.g. on the server)."""
    suffix = path.suffix.lower()
    if suffix not in _DATA_FILE or not path.is_file():
        return
    with open(path, "rb") as handle:
        head = handle.read(65536).decode("latin-1")
    if suffix in (".nrrd", ".nhdr"):
        head = re.split(r"\r?\n\r?\n", head, maxsplit=1)[0]  # the header ends at the first blank line
    match = _DATA_FILE[suffix].search(head)
    if match is None or match.group(1) in ("LOCAL", ""):
        return
    name = match.group(1)
    if (Path(name).name != name or name in (".", "..") or "%" in name or name.upper().startswith("LIST")
            or not (path.parent / name).is_file()):
        raise UserInputError(f"{path.name} keeps its voxels in {name!r}, which is not a file beside it",
                             expected="a self-contained image, or a header whose data file sits in the same folder",
                             fix="convert it to a single file (.nii.gz, .nrrd, .mha) and give that")


def _dicom_series_files(folder: Path) -> list[str]:
    import SimpleITK as sitk

    series = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
    if not series:
        refuse_non_image_folder(folder)
        raise UserInputError(f"no DICOM series found in {folder}", expected="a folder of DICOM slices",
                             fix="point to the folder that holds the .dcm files of one series")
    # The series with the most slices is taken; others are reported.
    files = max((sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), s) for s in series), key=len)
    return list(files)


def _read_header(reader_path: str | list[str]):
    import SimpleITK as sitk

    if isinstance(reader_path, list):
        reader = sitk.ImageFileReader()
        reader.SetFileName(reader_path[0])
        reader.ReadImageInformation()
        size = list(reader.GetSize())
        if len(size) == 3 and size[2] == 1:
            size[2] = len(reader_path)
        return size, reader.GetNumberOfComponents(), reader.GetDimension()
    reader = sitk.ImageFileReader()
    reader.SetFileName(reader_path)
    reader.ReadImageInformation()
    return list(reader.GetSize()), reader.GetNumberOfComponents(), reader.GetDimension()


def read_volume(path: str | os.PathLike, modality: str | None = None, *, allow_nonfinite: bool = False,
                allow_channels: bool = True, allow_2d: bool = False) -> Volume:
    """Read an image as a `Volume` with a RAS affine.

    Args:
        path: NIfTI/NRRD/MHA/MHD file, a DICOM file or series folder, or a `.seg.nrrd` (read as labels).
        modality: name stored on the Volume ("T1", "CT", ...), or None.
        allow_nonfinite: keep NaN/Inf (otherwise refused with a clear error).
        allow_channels: accept multi-component images as `(C, I, J, K)`; otherwise refuse them.
        allow_2d: accept a 2D image or a single slice (`info` describes any image; the engines need 3D): returned
            as one slice, shape `(I, J, 1)`, and `metadata["2d"] = True`.

    Returns:
        Volume with array `(I, J, K)` (scalar) or `(C, I, J, K)` (vector image) in the file's dtype.
    """
    import SimpleITK as sitk

    path = Path(path)
    _require_existing(path)
    if is_segmentation_path(str(path)):
        return read_segmentation(str(path))
    check_data_file_reference(path)
    if path.is_file():
        refuse_non_image_dicom(path)
    source: str | list[str] = _dicom_series_files(path) if path.is_dir() else str(path)
    try:
        size, components, dimension = _read_header(source)
    except Exception as exc:  # noqa: BLE001 - any failure to parse the header is the file's problem
        raise UserInputError(f"cannot read {path}", expected=f"a readable image ({', '.join(SUPPORTED_SUFFIXES)} "
                             "or a DICOM folder)", got=_first_line(exc),
                             fix="check that the file is complete and in a supported format") from exc
    flat = dimension == 2 or (dimension == 3 and size[2] == 1 and not path.is_dir())
    if flat and allow_2d:
        return _read_2d(path, source, modality, components, allow_nonfinite)
    if flat:
        raise UserInputError(f"{path.name} is a 2D image", expected="a 3D volume",
                             got=f"size {size}", fix="give a 3D volume (or a DICOM folder with all slices)")
    if dimension == 4:
        raise UserInputError(f"{path.name} is a 4D image (time series or multi-volume)", expected="a 3D volume",
                             got=f"size {size}", fix="extract one 3D volume first")
    if components > 1 and not allow_channels:
        raise UserInputError(f"{path.name} has {components} components per voxel", expected="a scalar image",
                             fix="extract one component (e.g. multimodalgen convert --component N)")
    if 0 in size:
        raise UserInputError(f"{path.name} has zero size", expected="every dimension >= 1", got=f"size {size}")
    check_fits_in_memory(float(np.prod(size)) * components * _BYTES_PER_VOXEL_ESTIMATE, f"reading {path.name}")
    try:
        if _is_nifti(path):
            # ITK's NIfTI reader turns NaN into 0 and accepts some truncated .gz files; nibabel reads the stored
            # voxels exactly (same index order, same scl scaling as ITK) and fails on truncation. The geometry
            # comes from ITK's header reader, so it is exactly what Slicer (ITK) sees.
            header = sitk.ImageFileReader()
            header.SetFileName(str(path))
            header.ReadImageInformation()
            ijk_to_lps = np.eye(4)
            ijk_to_lps[:3, :3] = np.asarray(header.GetDirection()).reshape(3, 3) * np.asarray(header.GetSpacing())
            ijk_to_lps[:3, 3] = header.GetOrigin()
            expected = tuple(size) if components == 1 else (components, *size)
            volume = Volume(_nifti_voxels(path, expected), affine_ras_from_lps(ijk_to_lps), modality,
                            {"source": str(path)})
        else:
            if isinstance(source, list):
                reader = sitk.ImageSeriesReader()
                reader.SetFileNames(source)
                image = reader.Execute()
            else:
                image = sitk.ReadImage(source)
            volume = sitk_to_volume(image, modality, {"source": str(path)})
    except UserInputError:
        raise
    except Exception as exc:  # noqa: BLE001 - ITK, nibabel, zlib: a corrupt file raises many kinds; one clear line
        raise UserInputError(f"cannot read {path}", expected="an uncorrupted image file", got=_first_line(exc),
                             fix="the file may be truncated or corrupt; re-export it") from exc
    if not allow_nonfinite:
        check_finite(volume, f"image {path.name}")
    return volume


def _read_2d(path: Path, source, modality: str | None, components: int, allow_nonfinite: bool) -> Volume:
    """A 2D image or single slice as a one-slice Volume `(I, J, 1)` (`(C, I, J, 1)` for vector images)."""
    import SimpleITK as sitk

    try:
        image = sitk.ReadImage(source if isinstance(source, str) else source[0])
        if image.GetDimension() == 2:
            image = sitk.JoinSeries(image)  # (I, J) -> (I, J, 1): spacing 1 mm and identity along the new axis
        volume = sitk_to_volume(image, modality, {"source": str(path), "2d": True})
    except Exception as exc:  # noqa: BLE001 - as in read_volume: one clear line for any reader failure
        raise UserInputError(f"cannot read {path}", expected="an uncorrupted image file", got=_first_line(exc),
                             fix="the file may be truncated or corrupt; re-export it") from exc
    if not allow_nonfinite:
        check_finite(volume, f"image {path.name}")
    return volume


def _is_nifti(path: Path) -> bool:
    return path.name.lower().endswith((".nii", ".nii.gz"))


def _nifti_voxels(path: Path, expected_shape: tuple[int, ...]) -> np.ndarray:
    """Voxels of a NIfTI file as stored (scaled by scl_slope/inter like ITK), shaped like `sitk_to_volume`'s array."""
    import nibabel as nib

    data = np.asanyarray(nib.load(str(path)).dataobj)
    if data.ndim == 5 and data.shape[3] == 1:  # vector image: (I, J, K, 1, C) -> (C, I, J, K)
        data = np.moveaxis(data[:, :, :, 0, :], -1, 0)
    data = np.ascontiguousarray(data)
    if data.shape != tuple(expected_shape):
        raise ValueError(f"NIfTI voxel array {data.shape} disagrees with its header {tuple(expected_shape)}")
    return data


def read_label(path: str | os.PathLike) -> Volume:
    """Read a label map (NIfTI/NRRD/MHA or `.seg.nrrd`): integer values >= 0, returned as uint8/int32 `(I, J, K)`.

    Segment names come from the `.seg.nrrd` itself or, for other formats, from the `<name>.labels.json` sidecar the
    project writes beside them (`metadata["segments"]`, with `metadata["segments_from"]` = the sidecar's path), so a
    NIfTI reference written by `segment` or `convert` keeps its names when it is read back."""
    volume = read_volume(path, "LABEL", allow_nonfinite=True, allow_channels=False)
    array = check_label_array(volume.array, f"label map {Path(path).name}")
    metadata = dict(volume.metadata)
    if not metadata.get("segments") and not Path(path).is_dir():
        metadata.update(read_labels_sidecar(path))
    return Volume(array, volume.affine, "LABEL", metadata)


def read_labels_sidecar(path: str | os.PathLike) -> dict:
    """`{"segments": [{label, name, ...}, ...], "segments_from": sidecar path}` from the `<name>.labels.json` beside
    label map `path`, or {} when there is none or it is not a segment list (a foreign or damaged sidecar is ignored:
    the label map is still usable by value)."""
    import json

    from multimodalgen.io.writers import labels_sidecar

    sidecar = labels_sidecar(path)
    try:
        segments = json.loads(sidecar.read_text(encoding="utf-8")).get("segments") if sidecar.is_file() else None
    except (OSError, ValueError, AttributeError):
        return {}
    if not isinstance(segments, list) or not segments or not all(
            isinstance(s, dict) and isinstance(s.get("label"), int) for s in segments):
        return {}
    return {"segments": segments, "segments_from": str(sidecar)}


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    interesting = [line for line in lines if "ERROR" in line or "rror" in line] or lines or [type(exc).__name__]
    return interesting[-1][:200]
