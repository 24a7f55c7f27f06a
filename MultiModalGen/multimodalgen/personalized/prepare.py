"""Turn user volumes into model input: modality names checked, one grid (explicit resampling only), intensities
normalised to [0, 1], padding to the encoder's divisor.

Array layout: `(M, I, J, K)` float32 in the model's modality order, voxel axes of the reference volume (the first
given modality in model order); absent modalities are zeros and marked False in `present` `(M,)`.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from multimodalgen.errors import UserInputError
from multimodalgen.intensity import CT_WINDOW_HU, normalize
from multimodalgen.volume import Volume, other_grid_error, same_grid


def check_modalities(names, known: tuple[str, ...]) -> None:
    """UserInputError for names the model does not know, or no modality at all."""
    names = list(names)
    if not names:
        raise UserInputError("no image given", expected=f"at least one of {', '.join(known)}",
                             fix="pass --image NAME=PATH")
    bad = [n for n in names if n not in known]
    if bad:
        raise UserInputError(f"unknown modality {', '.join(bad)}", expected=f"one of {', '.join(known)}",
                             got=", ".join(names), fix="name each image with a modality the model knows, e.g. "
                             f"--image {known[0]}=PATH")


def stack_images(images: dict[str, Volume], modalities: tuple[str, ...], resample: bool = False,
                 what: str = "image", ct_window: tuple[float, float] | None = None
                 ) -> tuple[np.ndarray, np.ndarray, Volume]:
    """`(array (M, I, J, K) float32 in [0, 1], present (M,) bool, reference Volume)`.

    Images on another grid than the reference are resampled linearly only with `resample=True`; otherwise
    UserInputError explains (register them first, or pass --resample). `ct_window` (HU) overrides the package's CT
    window (a model's `PersonalizedConfig.ct_window`).
    """
    check_modalities(images.keys(), modalities)
    order = [m for m in modalities if m in images]
    reference = images[order[0]]
    out = np.zeros((len(modalities),) + reference.shape3d, np.float32)
    present = np.zeros(len(modalities), bool)
    for name in order:
        vol = images[name]
        if vol.array.ndim != 3:
            raise UserInputError(f"{what} {name} has {vol.n_channels} channels", expected="a scalar 3D image",
                                 got=f"shape {vol.array.shape}", fix="give one channel per modality")
        if not same_grid(vol, reference):
            if not resample:
                raise other_grid_error(f"{what} {name} is not on the grid of {order[0]}", reference, vol,
                                       "register the images first (`multimodalgen register`), or pass "
                                       "--resample if they are already aligned in world space")
            from multimodalgen.resample import resample_like

            vol = resample_like(vol, reference, order="linear")
        out[modalities.index(name)] = normalize(vol.array, name, ct_window=tuple(ct_window or CT_WINDOW_HU))
        present[modalities.index(name)] = True
    return out, present, reference


def pad_to_multiple(x: torch.Tensor, divisor: int) -> tuple[torch.Tensor, tuple[int, int, int]]:
    """Zero-pad the last three axes (at the end) up to multiples of `divisor`, and to at least `2 * divisor` so the
    coarsest level keeps >= 2 voxels per axis (per-volume normalisation needs more than one value per channel).
    Returns the padded tensor and the original size."""
    size = tuple(int(s) for s in x.shape[-3:])
    pads = [max(2 * divisor, s + (-s) % divisor) - s for s in size]
    return F.pad(x, (0, pads[2], 0, pads[1], 0, pads[0])), size


def working_size(shape: tuple[int, int, int], spacing, working_spacing: float) -> tuple[int, int, int]:
    """Grid size `(i, j, k)` covering `shape` voxels of `spacing` mm at `working_spacing` mm (0 = unchanged)."""
    if working_spacing <= 0:
        return tuple(int(s) for s in shape)
    return tuple(max(4, int(round(n * float(sp) / working_spacing))) for n, sp in zip(shape, spacing))


def to_working_grid(x: torch.Tensor, spacing, working_spacing: float, labels: bool = False) -> torch.Tensor:
    """Resample `(B, C, I, J, K)` images (linear) or `(B, I, J, K)` int labels (nearest) from a grid of `spacing`
    mm `(3,)` to `working_spacing` mm (same field of view, voxel corners aligned); unchanged when it is 0."""
    size = working_size(tuple(x.shape[-3:]), spacing, working_spacing)
    if size == tuple(x.shape[-3:]):
        return x
    if labels:
        return F.interpolate(x[:, None].float(), size=size, mode="nearest")[:, 0].to(x.dtype)
    return F.interpolate(x, size=size, mode="trilinear", align_corners=False)


def from_working_grid(logits: torch.Tensor, size: tuple[int, int, int]) -> torch.Tensor:
    """Resample `(B, C, i, j, k)` logits or probabilities back to the image grid `size` (linear)."""
    if tuple(logits.shape[-3:]) == tuple(size):
        return logits
    return F.interpolate(logits, size=tuple(size), mode="trilinear", align_corners=False)


def model_input(array: np.ndarray, spacing, config) -> tuple[torch.Tensor, tuple[int, int, int], tuple[int, int, int]]:
    """Stacked images `(M, I, J, K)` on a grid of `spacing` mm -> the model's input `(1, M, i, j, k)` on its working
    grid (`config.working_spacing`), padded for the encoder; also the unpadded working size and the native size
    `(I, J, K)` that `to_image_grid` needs to bring the outputs back."""
    native = tuple(int(s) for s in array.shape[1:])
    x = to_working_grid(torch.from_numpy(array)[None], spacing, config.working_spacing)
    x, size = pad_to_multiple(x, config.encoder.divisor)
    return x, size, native


def to_image_grid(outputs: torch.Tensor, size: tuple[int, int, int], native: tuple[int, int, int]) -> torch.Tensor:
    """Model outputs `(B, C, ...)` on the padded working grid -> `(B, C, I, J, K)` on the images' own grid (the
    inverse of `model_input`: remove the padding, then resample linearly)."""
    return from_working_grid(outputs[..., : size[0], : size[1], : size[2]], native)
