"""Label sources of the synth-2 engine: a folder of real, licence-cleared label maps, and the step that makes it.

The project never ships or downloads label maps. `prepare_label_folder(data_dir, out_dir)` copies the licence-cleared
sources out of a data folder laid out like `../shared/data` into `out_dir` and writes `sources.json`:

    tissue_probabilities.nii.gz   SPM TPM (GPL-2): (I, J, K, 6) probabilities of grey matter, white matter, CSF,
                                  bone, soft tissue, air, stored as uint8 (p * 255) on TPM's 1.5 mm MNI grid
    ct_head_labels.nii.gz         InVesalius head CT threshold masks (GPL-2): 1 head/soft tissue, 2 bone
    lesion_<case>.nii.gz          pyradiomics lesion masks (BSD-3): 1 lesion

Only these allow-listed files are read; the non-commercial atlases (Neuromorphometrics, HarvardOxford, JHU) and the
evaluation subject (Colin27 ch2 with AAL/Brodmann) are never copied, so weights trained from the folder can ship.

`read_label_folder(folder)` validates a prepared folder and returns `LabelSources` (arrays + RAS affines).
Bad input (no label maps, a non-integer or 4D label map, > 255 classes, a corrupt file) raises `UserInputError`.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from multimodalgen.errors import UserInputError

TISSUE_FILE = "tissue_probabilities.nii.gz"
TISSUE_CLASSES = ("grey matter", "white matter", "cerebrospinal fluid", "bone", "soft tissue", "air")
SOURCES_FILE = "sources.json"
LABEL_SOURCES_VERSION = "1"

#: (relative source path in a data folder, output name, kind, licence). kind: "tissue" (4D probabilities) or "labels".
ALLOWED_SOURCES = (
    ("spm_templates/TPM.nii.gz", TISSUE_FILE, "tissue", "GPL-2 (SPM)"),
    ("invesalius_ct_head/ct_head_threshold_masks.nii.gz", "ct_head_labels.nii.gz", "labels", "GPL-2 (InVesalius)"),
    ("pyradiomics_cases/brain1_label.nrrd", "lesion_brain1.nii.gz", "labels", "BSD-3 (pyradiomics)"),
    ("pyradiomics_cases/lung1_label.nrrd", "lesion_lung1.nii.gz", "labels", "BSD-3 (pyradiomics)"),
    ("pyradiomics_cases/breast1_label.nrrd", "lesion_breast1.nii.gz", "labels", "BSD-3 (pyradiomics)"),
)
#: Files that must never drive training (non-commercial licences or the evaluation subject).
FORBIDDEN_NAMES = ("neuromorphometrics", "harvardoxford", "jhu", "aal", "brodmann", "ch2")


@dataclasses.dataclass
class LabelSources:
    """A prepared label folder in memory.

    tissue: `(6, I, J, K)` float32 probabilities (classes `TISSUE_CLASSES`), `tissue_affine` voxel -> RAS mm, or None.
    label_maps: name -> (integer array `(I, J, K)`, voxel -> RAS affine) for the other label maps.
    """

    folder: Path
    tissue: np.ndarray | None
    tissue_affine: np.ndarray | None
    label_maps: dict[str, tuple[np.ndarray, np.ndarray]]
    sources: dict


def _read_nifti(path: Path):
    import nibabel as nib

    try:
        img = nib.load(str(path))
        return np.asanyarray(img.dataobj), np.asarray(img.affine, dtype=np.float64)
    except Exception as exc:  # nibabel raises many kinds for corrupt files
        raise UserInputError(f"cannot read label map {path.name}", expected="a readable NIfTI file",
                             got=f"{type(exc).__name__}: {exc}"[:200],
                             fix="re-run prepare-labels on the data folder") from None


def check_label_map(array: np.ndarray, name: str) -> np.ndarray:
    """A 3D integer label map with <= 255 classes, as int32; UserInputError naming `name` otherwise (integer and
    sign checks are `volume.check_label_array`'s)."""
    from multimodalgen.volume import check_label_array

    array = np.asarray(array)
    if array.ndim != 3:
        raise UserInputError(f"label map {name} is not 3D", expected="an (I, J, K) integer label map",
                             got=f"shape {array.shape}", fix="pass one 3D label map per file")
    labels = check_label_array(array, what=f"label map {name}")
    n = len(np.unique(labels))
    if n > 256:
        raise UserInputError(f"label map {name} has {n} values", expected="<= 255 classes besides background",
                             got=f"values {labels.min()}..{labels.max()}", fix="merge classes into at most 255")
    return labels.astype(np.int32)


def prepare_label_folder(data_dir: str | Path, out_dir: str | Path) -> dict:
    """Copy the licence-cleared label sources of `data_dir` into `out_dir` (see module docstring); returns the
    `sources.json` content. UserInputError when none of the allow-listed files is found."""
    import nibabel as nib

    data_dir, out_dir = Path(data_dir), Path(out_dir)
    if not data_dir.is_dir():
        raise UserInputError("data folder not found", got=str(data_dir), fix="pass the folder that holds "
                             "spm_templates/, invesalius_ct_head/, pyradiomics_cases/")
    found = [s for s in ALLOWED_SOURCES if (data_dir / s[0]).is_file()]
    if not found:
        raise UserInputError(f"no label maps in {data_dir}", expected="any of " + ", ".join(s[0] for s in
                             ALLOWED_SOURCES), fix="pass the shared data folder (e.g. ../shared/data)")
    out_dir.mkdir(parents=True, exist_ok=True)
    record = {"version": LABEL_SOURCES_VERSION, "files": {}}
    for rel, name, kind, licence in found:
        src = data_dir / rel
        if kind == "tissue":
            array, affine = _read_nifti(src)
            array = np.asarray(array, dtype=np.float32)
            if array.ndim != 4 or array.shape[-1] != len(TISSUE_CLASSES):
                raise UserInputError(f"{rel} is not a 6-class tissue probability map", expected="(I, J, K, 6)",
                                     got=f"shape {array.shape}", fix="use SPM's TPM.nii.gz")
            stored = np.clip(np.round(array * 255.0), 0, 255).astype(np.uint8)
        else:
            if src.suffix == ".nrrd":
                from multimodalgen.io import read_label

                vol = read_label(str(src))
                array, affine = vol.array, vol.affine
            else:
                array, affine = _read_nifti(src)
            stored = check_label_map(array, rel).astype(np.uint8)
        _atomic_nifti(nib.Nifti1Image(stored, affine), out_dir / name)
        record["files"][name] = {"kind": kind, "licence": licence, "source": rel, "shape": list(stored.shape)}
    (out_dir / SOURCES_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return record


def _atomic_nifti(img, path: Path) -> None:
    from multimodalgen.io.writers import atomic_path

    with atomic_path(path) as tmp:
        img.to_filename(str(tmp))


def read_label_folder(folder: str | Path) -> LabelSources:
    """Load a folder written by `prepare_label_folder` (validated; see module docstring)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserInputError("label folder not found", got=str(folder),
                             fix="make one with `multimodalgen prepare-labels --data ../shared/data --out DIR`")
    files = sorted(p for p in folder.iterdir() if p.name.endswith((".nii.gz", ".nii")))
    bad = [p.name for p in files if any(f in p.name.lower() for f in FORBIDDEN_NAMES)]
    if bad:
        raise UserInputError(f"label folder holds files that must not drive training: {', '.join(bad)}",
                             expected="only licence-cleared sources (SPM TPM, InVesalius, pyradiomics, ITK)",
                             fix="remove them; use prepare-labels to build the folder")
    if not files:
        raise UserInputError(f"no label maps in {folder}", expected="NIfTI label maps (*.nii.gz)",
                             fix="make the folder with `multimodalgen prepare-labels --data ../shared/data --out DIR`")
    sources = {}
    if (folder / SOURCES_FILE).is_file():
        sources = json.loads((folder / SOURCES_FILE).read_text(encoding="utf-8"))
    tissue = tissue_affine = None
    label_maps = {}
    for path in files:
        array, affine = _read_nifti(path)
        if path.name == TISSUE_FILE:
            if array.ndim != 4 or array.shape[-1] != len(TISSUE_CLASSES):
                raise UserInputError(f"{path.name} is not a 6-class tissue map", expected="(I, J, K, 6)",
                                     got=f"shape {array.shape}", fix="re-run prepare-labels")
            tissue = np.moveaxis(np.asarray(array, dtype=np.float32) / 255.0, -1, 0).copy()
            tissue /= np.maximum(tissue.sum(0, keepdims=True), 1e-6)
            tissue_affine = affine
        else:
            label_maps[path.name.split(".")[0]] = (check_label_map(array, path.name), affine)
    return LabelSources(folder, tissue, tissue_affine, label_maps, sources)
