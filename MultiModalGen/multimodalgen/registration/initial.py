"""Initial alignment: a translation from image moments or field-of-view centres (fixed -> moving, RAS mm).

* "moments": aligns the intensity centres of mass (first moments) of the foregrounds;
* "centers": aligns the centres of the two fields of view (for images that do not overlap in world space);
* "none": keeps the world coordinates of the headers (identity).
"""

from __future__ import annotations

import numpy as np

from multimodalgen.errors import UserInputError
from multimodalgen.registration.contract import INITS


def centre_of_mass(array: np.ndarray, affine: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Intensity-weighted centre (RAS mm) of a non-negative `(I, J, K)` image (inside `mask` when given)."""
    w = np.clip(np.asarray(array, np.float64), 0, None)
    if mask is not None:
        w = w * mask
    total = w.sum()
    if total <= 0:
        return field_centre(array.shape, affine)
    idx = [np.arange(n, dtype=np.float64) for n in array.shape]
    com = np.array([(w.sum(axis=tuple(a for a in range(3) if a != d)) * idx[d]).sum() / total for d in range(3)])
    return affine[:3, :3] @ com + affine[:3, 3]


def field_centre(shape, affine: np.ndarray) -> np.ndarray:
    """RAS mm of the centre of a grid's field of view."""
    return affine[:3, :3] @ ((np.asarray(shape, np.float64) - 1) / 2) + affine[:3, 3]


def initial_transform(init: str, fixed: tuple, moving: tuple) -> tuple[np.ndarray, np.ndarray]:
    """Initial fixed -> moving translation.

    Args:
        init: "moments", "centers" or "none".
        fixed, moving: `(array, affine, mask_or_None)` on their working grids (arrays normalised to [0, 1]).

    Returns:
        (4x4 RAS affine, fixed centre in RAS mm used as the rotation centre of the linear stage).
    """
    if init not in INITS:
        raise UserInputError("unknown initialisation", expected=" | ".join(INITS), got=repr(init))
    c_fix = centre_of_mass(*fixed)
    out = np.eye(4)
    if init == "moments":
        out[:3, 3] = centre_of_mass(*moving) - c_fix
    elif init == "centers":
        out[:3, 3] = field_centre(moving[0].shape, moving[1]) - field_centre(fixed[0].shape, fixed[1])
    return out, c_fix
