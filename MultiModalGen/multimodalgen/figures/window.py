"""Modality-aware display of intensities: CT in Hounsfield windows (brain, bone), PET in a colour map, MR and other
images between their 1st and 99th percentiles. Returns 8-bit RGB for a 2D slice."""

from __future__ import annotations

import dataclasses

import numpy as np

#: (low, high) HU of the CT windows (level 40 / width 80 for brain, level 500 / width 2000 for bone).
CT_WINDOWS = {"brain": (0.0, 80.0), "bone": (-500.0, 1500.0)}

#: Anchors of a black -> purple -> orange -> yellow colour map for PET (inferno-like), RGB 0-255.
_HEAT = np.array([[0, 0, 4], [87, 16, 110], [188, 55, 84], [249, 142, 9], [252, 255, 164]], float)


@dataclasses.dataclass(frozen=True)
class Window:
    """Display range `low..high` (image units), `colour_map` ("grey" or "heat"), `label` for the caption."""

    low: float
    high: float
    colour_map: str
    label: str


def looks_like_ct(array: np.ndarray) -> bool:
    """True for intensities in Hounsfield units: air near -1000 (1st percentile <= -900) and bone above 300."""
    finite = array[np.isfinite(array)]
    if finite.size == 0:
        return False
    return bool(np.percentile(finite, 1) <= -900 and finite.max() >= 300 and finite.min() >= -1100)


def choose_window(array: np.ndarray, modality: str | None, ct_window: str = "brain") -> Window:
    """The display window of an image: CT (named, or an unnamed image in Hounsfield units) ->
    `CT_WINDOWS[ct_window]` (HU), PET -> heat map over the 1st-99.5th
    percentiles, anything else -> grey over the 1st-99th percentiles of the non-zero voxels."""
    modality = (modality or "").upper()
    step = max(1, int(np.ceil((array.size / 400_000) ** (1 / 3)))) if array.ndim == 3 else 1
    array = array[::step, ::step, ::step] if step > 1 else array  # percentiles of a regular subsample: fast
    if modality == "CT" or (not modality and looks_like_ct(array)):
        low, high = CT_WINDOWS[ct_window]
        how = "" if modality == "CT" else " (CT recognised from its Hounsfield range)"
        return Window(low, high, "grey", f"CT {ct_window} window {low:g} to {high:g} HU{how}")
    values = array[np.isfinite(array)]
    values = values[values != 0] if np.count_nonzero(values) > values.size // 20 else values
    if values.size == 0:
        return Window(0.0, 1.0, "grey", "empty image")
    if modality == "PET":
        low, high = np.percentile(values, (1, 99.5))
        return Window(float(low), float(high), "heat", "PET colour map, 1st-99.5th percentile")
    low, high = np.percentile(values, (1, 99))
    name = modality or "image"
    return Window(float(low), float(high), "grey", f"{name} grey scale, 1st-99th percentile")


def to_rgb(slice_2d: np.ndarray, window: Window) -> np.ndarray:
    """`(H, W, 3)` uint8 of a 2D slice through `window`."""
    scaled = np.clip((np.nan_to_num(slice_2d.astype(np.float32)) - window.low)
                     / max(window.high - window.low, 1e-6), 0, 1)
    if window.colour_map == "heat":
        position = scaled * (len(_HEAT) - 1)
        lower = np.floor(position).astype(int).clip(0, len(_HEAT) - 2)
        frac = (position - lower)[..., None]
        return (_HEAT[lower] * (1 - frac) + _HEAT[lower + 1] * frac).astype(np.uint8)
    grey = (scaled * 255).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=2)
