"""Slices of a volume as they appear on screen in 3D Slicer's default views (radiological convention).

Slicer's default slice views: axial (patient right on screen left, anterior up), coronal (right on screen left,
superior up), sagittal (anterior on screen left, superior up). A volume is first reoriented exactly to RAS
(`resample.reorient`, no interpolation), so the same anatomy lands in the same place whatever the file's
orientation (LPS DICOM, RAS NIfTI, oblique-ish scans take their closest axes).

A panel's `array` is in screen order: rows top -> bottom, columns left -> right; `pixel_mm` = (column width, row
height) in mm.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from multimodalgen.volume import Volume

VIEWS = ("axial", "coronal", "sagittal")

#: Patient direction at each screen edge: (left, right, top, bottom).
EDGE_LETTERS = {"axial": ("R", "L", "A", "P"), "coronal": ("R", "L", "S", "I"), "sagittal": ("A", "P", "S", "I")}

#: RAS axis held fixed by each view, and the RAS axes along screen columns / rows.
_VIEW_AXES = {"axial": (2, 0, 1), "coronal": (1, 0, 2), "sagittal": (0, 1, 2)}


@dataclasses.dataclass
class Panel:
    """One view of one slice: `array` 2D in screen order, `pixel_mm` (column width, row height) in mm, `index` the
    slice's index along the view's fixed RAS axis, `letters` (left, right, top, bottom)."""

    view: str
    array: np.ndarray
    pixel_mm: tuple[float, float]
    index: int
    letters: tuple[str, str, str, str]


def to_ras(volume: Volume) -> tuple[np.ndarray, np.ndarray]:
    """`(array (I, J, K) with i -> R, j -> A, k -> S, spacing (3,) mm)`; the first channel of a vector image."""
    from multimodalgen.resample import reorient

    ras = reorient(volume, "RAS")
    array = ras.array if ras.array.ndim == 3 else ras.array[0]
    return array, np.asarray(ras.spacing, float)


def screen_slice(array: np.ndarray, view: str, index: int) -> np.ndarray:
    """The `view` slice at `index` of an `(I, J, K)` RAS array, in screen order (rows top->bottom, cols left->right).

    axial: columns R -> L (i descending), rows A -> P (j descending); coronal: columns R -> L, rows S -> I;
    sagittal: columns A -> P (j descending), rows S -> I (k descending).
    """
    if view == "axial":
        return array[::-1, ::-1, index].T
    if view == "coronal":
        return array[::-1, index, ::-1].T
    if view == "sagittal":
        return array[index, ::-1, ::-1].T
    raise ValueError(f"unknown view {view!r}; expected one of {VIEWS}")


def screen_position(view: str, ras_axis: int, index: int, shape: tuple[int, int, int]) -> tuple[str, int] | None:
    """Where the plane `index` along RAS axis `ras_axis` crosses a `view` panel: ("col" or "row", screen index),
    or None when the plane is parallel to the view."""
    fixed, col_axis, row_axis = _VIEW_AXES[view]
    if ras_axis == fixed:
        return None
    kind = "col" if ras_axis == col_axis else "row"
    return kind, shape[ras_axis] - 1 - index  # every screen axis runs from the high RAS end


def panels(array: np.ndarray, spacing, centre: tuple[int, int, int] | None = None) -> list[Panel]:
    """The axial, coronal and sagittal panels through `centre` (default: the middle) of an `(I, J, K)` RAS array."""
    centre = centre or tuple(s // 2 for s in array.shape)
    out = []
    for view in VIEWS:
        fixed, col_axis, row_axis = _VIEW_AXES[view]
        out.append(Panel(view, screen_slice(array, view, int(centre[fixed])),
                         (float(spacing[col_axis]), float(spacing[row_axis])), int(centre[fixed]),
                         EDGE_LETTERS[view]))
    return out


def fixed_axis(view: str) -> int:
    """The RAS axis (0 = R, 1 = A, 2 = S) that `view` holds constant."""
    return _VIEW_AXES[view][0]
