"""Whole-volume or sliding-window logits of a personalized model on its working grid.

`predict_logits(model, x, present)` with x `(1, M, I, J, K)` (working grid, padded to the encoder's divisor) and
present `(1, M)` bool returns logits `(1, C, I, J, K)`. When `model.config.patch_size` is set and the volume is
larger than one window, cubic windows of that size are run with 50 % overlap and their logits blended with Gaussian
weights (nnU-Net style, sigma = 1/8 of the window), so each window is what a training crop was.

`mirrored_logits(model, x, present, axis)` averages those logits with the logits of the input mirrored along one
voxel axis (flipped back): test-time mirroring as nnU-Net does, only along the axis closest to the patient's
left-right (`left_right_axis`), the one symmetry the training subjects have (synth-2 flips heads left-right).
"""

from __future__ import annotations

import itertools

import numpy as np
import torch
import torch.nn.functional as F

from multimodalgen.volume import direction_from_affine


def window_starts(size: int, patch: int, overlap: float = 0.5) -> list[int]:
    """Start offsets of windows of `patch` voxels covering `size` voxels (size >= patch) with `overlap`."""
    if size <= patch:
        return [0]
    step = max(1, int(patch * (1.0 - overlap)))
    n = -(-(size - patch) // step) + 1
    return sorted({round(i * (size - patch) / (n - 1)) for i in range(n)})


def gaussian_weights(patch: int, device: torch.device) -> torch.Tensor:
    """`(patch, patch, patch)` blending weights, 1 at the centre, >= 1e-3 at the borders."""
    t = torch.arange(patch, device=device, dtype=torch.float32) - (patch - 1) / 2.0
    g = torch.exp(-0.5 * (t / (patch / 8.0)) ** 2)
    w = g[:, None, None] * g[None, :, None] * g[None, None, :]
    return (w / w.max()).clamp_min(1e-3)


@torch.no_grad()
def predict_logits(model, x: torch.Tensor, present: torch.Tensor, patch_size: int | None = None) -> torch.Tensor:
    """Logits `(1, C, I, J, K)` (see module docstring); `patch_size` overrides the model's."""
    patch = int(model.config.patch_size if patch_size is None else patch_size)
    size = tuple(int(s) for s in x.shape[-3:])
    if patch <= 0 or all(s <= patch for s in size):
        return model(x, present, reconstruct=False)["logits"]
    pads = [max(0, patch - s) for s in size]
    xp = F.pad(x, (0, pads[2], 0, pads[1], 0, pads[0]))
    full = tuple(s + p for s, p in zip(size, pads))
    weights = gaussian_weights(patch, x.device)
    acc = None
    norm = torch.zeros(full, device=x.device)
    for i, j, k in itertools.product(*[window_starts(s, patch) for s in full]):
        window = xp[..., i:i + patch, j:j + patch, k:k + patch]
        logits = model(window, present, reconstruct=False)["logits"]
        if acc is None:
            acc = torch.zeros((1, logits.shape[1]) + full, device=x.device)
        acc[..., i:i + patch, j:j + patch, k:k + patch] += logits * weights
        norm[i:i + patch, j:j + patch, k:k + patch] += weights
    out = acc / norm
    return out[..., : size[0], : size[1], : size[2]]


def left_right_axis(affine) -> int:
    """The voxel axis (0, 1 or 2) whose direction is closest to world left-right (RAS x) in a 4x4 voxel -> world
    affine (numpy array)."""
    return int(np.argmax(np.abs(direction_from_affine(np.asarray(affine))[0, :])))


def mirrored_logits(model, x: torch.Tensor, present: torch.Tensor, axis: int) -> torch.Tensor:
    """Logits `(1, C, I, J, K)`: the mean of `predict_logits` on `x` and on `x` mirrored along voxel `axis` (0..2),
    the latter mirrored back (twice the network time)."""
    if axis not in (0, 1, 2):
        raise ValueError(f"axis must be 0, 1 or 2, got {axis}")
    d = 2 + axis
    return 0.5 * (predict_logits(model, x, present) + predict_logits(model, x.flip(d), present).flip(d))
