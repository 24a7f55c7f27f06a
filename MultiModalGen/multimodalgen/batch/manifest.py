"""Reading and validating a cohort manifest (`STUDIES.csv`).

Format: a CSV with a header row; column `study_id` plus the task's inputs as columns, one study per row.

- register: ``study_id,fixed,moving[,moving_labels][,fixed_labels][,fixed_mask]``
- segment / fewshot-apply: ``study_id,T1,T2,FLAIR,...`` (modality names; an empty cell = that modality is missing
  for this study, at least one per study) and optionally ``label`` (a reference segmentation: Dice in the summary);
  fewshot-apply also takes an ``image`` column (an image without a modality name)
- resample: ``study_id`` plus any image columns (columns named ``label``, ``mask``, ``*_label``, ``*_labels`` or
  ``*_mask`` are label maps)

Paths are files or DICOM folders; relative paths are relative to the CSV's folder; ``~`` is expanded. Whole-manifest
problems (no such file, missing or unknown columns, duplicate or unsafe study ids) raise `UserInputError`;
missing input files are reported per study (`Study.problems`) so the rest of the cohort still runs.
"""

from __future__ import annotations

import csv
import dataclasses
import os
import re
from pathlib import Path

from multimodalgen.batch.tasks import TaskSpec
from multimodalgen.errors import UserInputError
from multimodalgen.volume import KNOWN_MODALITIES

ID_COLUMN = "study_id"
#: Study ids and column names become file names: letters, digits, '.', '_' and '-', starting with a letter or
#: digit, no "..": no separators, no parent folders, no absolute paths (`file_name`, the one sanitiser).
STUDY_ID_PATTERN = re.compile(r"^(?!.*\.\.)[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def file_name(value: str, what: str, where: str) -> str:
    """`value` if it is safe as a file or folder name (see `STUDY_ID_PATTERN`), else a UserInputError naming
    `what` (e.g. "column name") and `where` (manifest and line)."""
    if not STUDY_ID_PATTERN.match(value):
        raise UserInputError(f"invalid {what} {value!r} ({where})", expected="letters, digits, '.', '_' or '-' "
                             "(starting with a letter or digit, no '..'); it becomes a file name",
                             fix=f"rename the {what}")
    return value
#: Column names of the "modalities" kind are matched case-insensitively to these.
_MODALITIES = {name.upper(): name for name in KNOWN_MODALITIES if name not in ("LABEL", "FEATURES")}


@dataclasses.dataclass
class Study:
    """One manifest row.

    Attributes:
        study_id: unique id (also the output folder name).
        inputs: column -> absolute path, or None for an empty optional cell.
        row: 1-based line number in the CSV (header = line 1).
        problems: per-study problems found while reading (e.g. missing files); a study with problems is
            recorded as failed without running.
    """

    study_id: str
    inputs: dict[str, str | None]
    row: int
    problems: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Manifest:
    """A validated manifest: its path, the input columns (canonical names) and the studies in file order."""

    path: Path
    columns: list[str]
    studies: list[Study]


def read_manifest(path: str | os.PathLike, spec: TaskSpec) -> Manifest:
    """Read and validate `path` for task `spec`.

    Raises:
        UserInputError: the file is missing or unreadable, has no `study_id` column, lacks a column the task
            requires, has a column the task does not take, has no rows, or has empty, unsafe or duplicate ids.
    """
    path = Path(os.path.expanduser(str(path))).resolve()
    if not path.is_file():
        raise UserInputError("manifest not found", expected="a CSV file (study_id plus one column per input)",
                             got=str(path), fix="check the --manifest path")
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.reader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise UserInputError(f"cannot read manifest {path.name}", expected="a UTF-8 CSV file", got=str(exc)) from exc
    rows = [(number, [cell.strip() for cell in row]) for number, row in enumerate(rows, start=1)
            if any(cell.strip() for cell in row) and not row[0].lstrip().startswith("#")]
    if not rows:
        raise UserInputError(f"manifest {path.name} is empty", expected=f"a header row ({ID_COLUMN},...) and one "
                             "row per study")
    header_line, header = rows[0]
    columns = _canonical_columns(header, spec, path.name)
    base = path.parent
    studies: list[Study] = []
    seen: dict[str, int] = {}
    bad_ids: list[str] = []
    for number, cells in rows[1:]:
        if len(cells) > len(header) and any(cells[len(header):]):
            raise UserInputError(f"{path.name} line {number} has {len(cells)} cells but the header has "
                                 f"{len(header)}", fix="quote paths that contain commas, or remove extra cells")
        cells = cells + [""] * (len(header) - len(cells))
        record = dict(zip(columns, cells))
        study_id = record.pop(ID_COLUMN)
        if not STUDY_ID_PATTERN.match(study_id):
            bad_ids.append(f"line {number}: {study_id!r}")
            continue
        if study_id in seen:
            raise UserInputError(f"duplicate study_id {study_id!r} in {path.name} (lines {seen[study_id]} and "
                                 f"{number})", fix="give every study a unique id")
        seen[study_id] = number
        studies.append(_make_study(study_id, record, number, spec, base))
    if bad_ids:
        raise UserInputError(f"invalid study_id in {path.name}", expected="letters, digits, '.', '_' or '-' "
                             "(it becomes a folder name)", got="; ".join(bad_ids[:5]) +
                             (f" and {len(bad_ids) - 5} more" if len(bad_ids) > 5 else ""),
                             fix="rename those studies")
    if not studies:
        raise UserInputError(f"manifest {path.name} has no studies", expected="one row per study after the header")
    return Manifest(path, [c for c in columns if c != ID_COLUMN], studies)


def _canonical_columns(header: list[str], spec: TaskSpec, name: str) -> list[str]:
    """Map header cells to canonical column names and check them against the task."""
    lowered = [cell.lower() for cell in header]
    if ID_COLUMN not in lowered:
        raise UserInputError(f"manifest {name} has no {ID_COLUMN} column", expected=f"a header like "
                             f"{ID_COLUMN},{','.join(_example_columns(spec))}", got=",".join(header),
                             fix=f"add a {ID_COLUMN} column")
    if any(not cell for cell in header):
        raise UserInputError(f"manifest {name} has an empty column name", got=",".join(header),
                             fix="name every column in the header row")
    canonical = []
    for cell, low in zip(header, lowered):
        if low == ID_COLUMN:
            canonical.append(ID_COLUMN)
        elif spec.columns == "fixed":
            canonical.append(low)
        elif spec.columns == "modalities":
            canonical.append(_MODALITIES.get(cell.upper(), low if low in spec.optional else cell))
        else:
            canonical.append(file_name(cell, "column name", f"{name}, header row"))  # resample writes <column>.<format>
    duplicates = sorted({c for c in canonical if canonical.count(c) > 1})
    if duplicates:
        raise UserInputError(f"manifest {name} repeats column(s) {', '.join(duplicates)}", fix="keep one of each")
    inputs = [c for c in canonical if c != ID_COLUMN]
    if spec.columns == "fixed":
        missing = [c for c in spec.required if c not in inputs]
        unknown = [c for c in inputs if c not in spec.required + spec.optional]
        if missing:
            raise UserInputError(f"manifest {name} lacks column(s) {', '.join(missing)} for --task {spec.name}",
                                 expected=f"{ID_COLUMN},{','.join(spec.required)}"
                                 + "".join(f"[,{c}]" for c in spec.optional), got=",".join(header),
                                 fix="add the missing columns")
        if unknown:
            raise UserInputError(f"manifest {name} has column(s) {', '.join(unknown)} that --task {spec.name} "
                                 "does not use", expected=", ".join(spec.required + spec.optional),
                                 fix="rename or remove those columns")
    elif spec.columns == "modalities":
        unknown = [c for c in inputs if c not in _MODALITIES.values() and c not in spec.optional]
        if unknown:
            raise UserInputError(f"manifest {name} has column(s) {', '.join(unknown)} that are not modality names",
                                 expected=f"modalities among {', '.join(_MODALITIES.values())}"
                                 + "".join(f" or {c}" for c in spec.optional), fix="rename those columns")
        if not [c for c in inputs if _is_image_column(c, spec)]:
            raise UserInputError(f"manifest {name} has no modality column for --task {spec.name}",
                                 expected=f"{ID_COLUMN},T1,T2,...", got=",".join(header))
    elif not inputs:
        raise UserInputError(f"manifest {name} has no input column", expected=f"{ID_COLUMN},image[,label]",
                             got=",".join(header))
    return canonical


def _example_columns(spec: TaskSpec) -> list[str]:
    if spec.columns == "fixed":
        return list(spec.required)
    return ["T1", "T2"] if spec.columns == "modalities" else ["image"]


def _make_study(study_id: str, record: dict[str, str], row: int, spec: TaskSpec, base: Path) -> Study:
    """Resolve paths and record per-study problems (missing required cells, files that do not exist)."""
    inputs: dict[str, str | None] = {}
    problems: list[str] = []
    for column, cell in record.items():
        if not cell:
            inputs[column] = None
            if column in spec.required or spec.columns == "any":
                problems.append(f"{column}: empty cell")
            continue
        path = Path(os.path.expanduser(cell))
        path = (path if path.is_absolute() else base / path).resolve()
        inputs[column] = str(path)
        if not path.exists():
            problems.append(f"{column}: {path} does not exist")
    if spec.columns == "modalities" and not any(path for c, path in inputs.items() if _is_image_column(c, spec)):
        problems.append("no modality given (every modality cell is empty)")
    return Study(study_id, inputs, row, problems)


def _is_image_column(column: str, spec: TaskSpec) -> bool:
    """For "modalities" tasks: a modality column, or a generic image column the task allows (e.g. `image`)."""
    return column in _MODALITIES.values() or (column in spec.optional and not is_label_column(column))


def is_label_column(column: str) -> bool:
    """True for columns holding label maps (nearest-neighbour resampling, integer output)."""
    low = column.lower()
    return low in ("label", "labels", "mask", "seg", "segmentation") or low.endswith(("_label", "_labels", "_mask"))
