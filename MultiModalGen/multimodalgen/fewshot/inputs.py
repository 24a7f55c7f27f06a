"""Few-shot inputs: image channels and the painting checked and brought onto one grid (Volume level).

Grids are never changed silently: channels or a painting on another grid are an error unless `resample=True`,
which resamples them onto the first image's grid (linear for images, nearest for the painting) and says so in
`notes` (the run's report).
"""

from __future__ import annotations

import numpy as np

from multimodalgen.errors import UserInputError
from multimodalgen.volume import Volume, check_finite, check_not_constant, other_grid_error, same_grid


def as_channel_list(images) -> list[Volume]:
    """A list of scalar Volumes from a Volume, a `(C, I, J, K)` Volume or a list of them."""
    if isinstance(images, Volume):
        images = [images]
    if not isinstance(images, (list, tuple)) or not images:
        raise UserInputError("no image given", expected="a list of one or more image Volumes", got=repr(type(images)))
    out: list[Volume] = []
    for v in images:
        if not isinstance(v, Volume):
            raise UserInputError("images must be Volumes", expected="multimodalgen.volume.Volume",
                                 got=type(v).__name__, fix="read them with multimodalgen.io.read_volume")
        out.extend(v.channel(c) for c in range(v.n_channels)) if v.n_channels > 1 else out.append(v)
    return out


def align_channels(images: list[Volume], resample: bool, notes: list[str]) -> list[Volume]:
    """Check that every channel is on the first one's grid; resample (linear, reported) when allowed."""
    from multimodalgen.resample import resample_like

    reference = images[0]
    out = [reference]
    for n, v in enumerate(images[1:], start=1):
        if same_grid(reference, v):
            out.append(v)
            continue
        if not resample:
            raise other_grid_error(f"image channel {n + 1} is on another grid than channel 1", reference, v,
                                   "register/resample the channels onto one grid first, or pass resample=True "
                                   "(--resample) to resample them onto channel 1's grid")
        out.append(resample_like(v, reference, "linear"))
        notes.append(f"image channel {n + 1} was resampled (linear) onto channel 1's grid")
    for n, v in enumerate(out):
        check_finite(v, f"image channel {n + 1}")
        check_not_constant(v, f"image channel {n + 1}")
    return out


def align_annotations(annotations: Volume, reference: Volume, resample: bool, notes: list[str]) -> np.ndarray:
    """The painting as an `(I, J, K)` array on the reference grid (nearest-neighbour resampling when allowed)."""
    from multimodalgen.resample import resample_like

    if not isinstance(annotations, Volume):
        raise UserInputError("annotations must be a Volume", expected="a label map Volume on the image grid",
                             got=type(annotations).__name__)
    if annotations.array.ndim != 3:
        raise UserInputError("the annotation must be a single label map", expected="shape (I, J, K)",
                             got=f"shape {annotations.array.shape}")
    if same_grid(reference, annotations):
        return annotations.array
    if not resample:
        raise UserInputError("the painting is on another grid than the image",
                             expected=f"shape {reference.shape3d}, spacing {np.round(reference.spacing, 4).tolist()} "
                                      "mm and the image's origin/orientation",
                             got=f"shape {annotations.shape3d}, spacing {np.round(annotations.spacing, 4).tolist()} mm",
                             fix="paint on the image itself (Slicer: segmentation geometry = the image), or pass "
                                 "resample=True (--resample) to resample the painting (nearest neighbour)")
    notes.append("the painting was resampled (nearest neighbour) onto the image grid; painted slices may have moved")
    return resample_like(annotations, reference, "nearest").array


def resolve_device(device):
    from multimodalgen.device import resolve_device

    return device if not isinstance(device, str) else resolve_device(device)
