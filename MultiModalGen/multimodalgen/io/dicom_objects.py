"""DICOM objects that are not images (RT structure sets, segmentations, structured reports, ...): recognise them
by their SOP Class UID and refuse them with a message that says what the file is and what to do instead.

The UID is looked up in the file's first 64 kB (the File Meta group (0002,0002) and the SOP Class UID (0008,0016)
sit at the start of every DICOM file), so no DICOM library is needed and nothing but the head is read.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from multimodalgen.errors import UserInputError

_HEAD_BYTES = 65536

#: SOP Class UID (or UID prefix ending in ".") -> (what it is, what to do).
NON_IMAGE_SOP_CLASSES: dict[str, tuple[str, str]] = {
    "1.2.840.10008.5.1.4.1.1.481.3": (
        "an RT Structure Set (RTSTRUCT: contours drawn on an image series, not an image)",
        "give the image series it was drawn on (the CT/MR DICOM folder); to use the contours as labels, load both "
        "in 3D Slicer with SlicerRT, export the segmentation as .seg.nrrd and pass that"),
    "1.2.840.10008.5.1.4.1.1.66.4": (
        "a DICOM Segmentation object (SEG: labels that refer to an image series, not an image)",
        "give the image series it refers to; to use the labels, load it in 3D Slicer (QuantitativeReporting) and "
        "export the segmentation as .seg.nrrd, or convert it with dcmqi's segimage2itkimage"),
    "1.2.840.10008.5.1.4.1.1.88.": (
        "a DICOM Structured Report (SR: measurements and text, no voxels)",
        "give the image series the report describes (the DICOM folder of the scan)"),
    "1.2.840.10008.5.1.4.1.1.481.5": (
        "an RT Plan (beam and dose prescription, no voxels)",
        "give the planning CT series instead; an RT Dose file is an image and can be read"),
    "1.2.840.10008.5.1.4.1.1.11.": (
        "a DICOM Presentation State (display settings for an image, no voxels)",
        "give the image series it applies to"),
    "1.2.840.10008.5.1.4.1.1.104.": (
        "an encapsulated document (PDF/CDA inside DICOM, no voxels)",
        "give an image series instead"),
    "1.2.840.10008.5.1.4.1.1.66.": (
        "a DICOM spatial registration or fiducials object (a transform or points, no voxels)",
        "give the image series; a registration can be recomputed with `multimodalgen register`"),
}

_UID = re.compile(rb"1\.2\.840\.10008\.5\.1\.4\.1\.1\.[0-9.]+")


def looks_like_dicom(path: Path) -> bool:
    """True for a file with the DICOM preamble ("DICM" at byte 128) or a .dcm name."""
    if path.suffix.lower() == ".dcm":
        return True
    try:
        with open(path, "rb") as handle:
            handle.seek(128)
            return handle.read(4) == b"DICM"
    except OSError:
        return False


def non_image_kind(path: str | os.PathLike) -> tuple[str, str] | None:
    """(what the object is, what to do) when `path` is a DICOM file of a known non-image SOP class, else None."""
    path = Path(path)
    if not path.is_file() or not looks_like_dicom(path):
        return None
    try:
        with open(path, "rb") as handle:
            head = handle.read(_HEAD_BYTES)
    except OSError:
        return None
    match = _UID.search(head)  # the first storage UID is the object's own SOP class ((0002,0002) or (0008,0016))
    if match is None:
        return None
    uid = match.group(0).decode("ascii").rstrip(".")
    for key, answer in NON_IMAGE_SOP_CLASSES.items():
        if uid == key or (key.endswith(".") and uid.startswith(key)):
            return answer
    return None


def refuse_non_image_dicom(path: str | os.PathLike) -> None:
    """Raise UserInputError saying what `path` is and what to do when it is a non-image DICOM object."""
    found = non_image_kind(path)
    if found is not None:
        what, fix = found
        raise UserInputError(f"{Path(path).name} is {what}", expected="an image (a volume, a slice or a DICOM "
                             "image series)", fix=fix)


def refuse_non_image_folder(folder: str | os.PathLike) -> None:
    """For a folder without an image series: raise the non-image message of the first non-image DICOM file in it."""
    folder = Path(folder)
    try:
        entries = sorted(p for p in folder.iterdir() if p.is_file())[:200]
    except OSError:
        return
    for entry in entries:
        found = non_image_kind(entry)
        if found is not None:
            what, fix = found
            raise UserInputError(f"{folder.name} holds no image series, only {entry.name}, which is {what}",
                                 expected="a folder with the slices of an image series", fix=fix)
