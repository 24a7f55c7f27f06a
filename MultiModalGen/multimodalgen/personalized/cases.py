"""CASES.csv: one labelled case per row; header = modality names (`T1,T2,PD,...`) and `label` (optional `case`).

Relative paths are relative to the CSV's folder; an empty cell means that modality is missing for the case (each
case needs at least one). Every problem is a UserInputError naming the row and column.
"""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import numpy as np

from multimodalgen.errors import UserInputError
from multimodalgen.personalized.prepare import check_modalities, stack_images

RESERVED = ("label", "case")


@dataclasses.dataclass
class Case:
    """One case: paths per modality and its label map."""

    name: str
    images: dict[str, Path]
    label: Path


@dataclasses.dataclass
class LoadedCase:
    """A case ready for training: array `(M, I, J, K)` float32, present `(M,)`, labels `(I, J, K)` int64."""

    name: str
    array: np.ndarray
    present: np.ndarray
    labels: np.ndarray
    spacing: tuple[float, float, float] | None = None   # mm per voxel axis (None: unknown, used as is)


def read_cases(csv_path: str | Path, known_modalities: tuple[str, ...]) -> list[Case]:
    """Parse and validate CASES.csv (paths must exist)."""
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise UserInputError("cases file not found", got=str(csv_path), fix="check the --cases path")
    with open(csv_path, newline="", encoding="utf-8-sig") as handle:
        rows = list(csv.DictReader(handle))
        header = [h.strip() for h in (rows[0].keys() if rows else [])]
    if not rows:
        raise UserInputError(f"{csv_path.name} has no cases", expected="a header line and one row per case",
                             fix="add rows: one case per line")
    if "label" not in header:
        raise UserInputError(f"{csv_path.name} has no label column", expected="a header with modality names and "
                             "'label'", got=",".join(header), fix="add a 'label' column with the label map paths")
    modalities = [h for h in header if h not in RESERVED]
    check_modalities(modalities, known_modalities)
    cases = []
    root = csv_path.parent
    for i, row in enumerate(rows, start=2):
        row = {k.strip(): (v or "").strip() for k, v in row.items() if k is not None}
        images = {}
        for m in modalities:
            if row.get(m):
                images[m] = _existing(root, row[m], csv_path.name, i, m)
        if not images:
            raise UserInputError(f"{csv_path.name} line {i} has no image", expected=f"a path in at least one of "
                                 f"{', '.join(modalities)}", fix="fill in the case's image paths")
        if not row.get("label"):
            raise UserInputError(f"{csv_path.name} line {i} has no label path", fix="fill in the label column")
        label = _existing(root, row["label"], csv_path.name, i, "label")
        cases.append(Case(row.get("case") or f"case{i - 1}", images, label))
    return cases


def _existing(root: Path, value: str, name: str, line: int, column: str) -> Path:
    path = Path(value)
    path = path if path.is_absolute() else root / path
    if not path.exists():
        raise UserInputError(f"{name} line {line}, column {column}: file not found", got=str(path),
                             fix="fix the path (relative paths are relative to the CSV's folder)")
    return path


def load_case(case: Case, modalities: tuple[str, ...], n_classes: int | None = None,
              resample: bool = False, ct_window: tuple[float, float] | None = None) -> LoadedCase:
    """Read, check and normalise one case (labels must be on the images' grid and not empty)."""
    from multimodalgen.io import read_label, read_volume
    from multimodalgen.volume import same_grid

    volumes = {m: read_volume(p, m) for m, p in case.images.items()}
    array, present, reference = stack_images(volumes, modalities, resample=resample, what=f"case {case.name}:",
                                             ct_window=ct_window)
    label = read_label(case.label)
    if not same_grid(label, reference):
        raise UserInputError(f"case {case.name}: label map {case.label.name} is not on the images' grid",
                             expected=f"shape {reference.shape3d}", got=f"shape {label.shape3d}",
                             fix="resample the label map (nearest neighbour) to the images' grid")
    labels = label.array.astype(np.int64)
    if not labels.any():
        raise UserInputError(f"case {case.name}: label map {case.label.name} is empty", expected="some voxels > 0",
                             got="only background", fix="check the label file")
    if n_classes is not None and labels.max() >= n_classes:
        raise UserInputError(f"case {case.name}: label value {int(labels.max())} outside the label set",
                             expected=f"values 0..{n_classes - 1}", got=f"max {int(labels.max())}",
                             fix="pass --labels with one name per label value")
    return LoadedCase(case.name, array, present, labels, tuple(float(v) for v in reference.spacing))
