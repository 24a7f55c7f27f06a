"""Encoder inference: memory-bounded sliding-window feature extraction on volumes of any size.

Array level: `extract_features(image, model, device, patch, overlap)` maps a normalised `(I, J, K)` float32
image to `(16, I, J, K)` float32 features on the same voxel grid. Volume level: `features_for_volume(volume)`
normalises intensities with `multimodalgen.intensity.normalize` (per the volume's modality) and returns a
`Volume` `(16, I, J, K)` with the input's affine, modality "FEATURES".

Windows of `patch` voxels (clipped to the padded image) step by `patch * (1 - overlap)`; window outputs are
blended with a separable weight that is 1 in the centre and tapers linearly to a small value at the window's
faces, so seams are invisible. The image is replicate-padded up to a multiple of the network divisor. Peak
memory is the `(16, I, J, K)` output, one `(I, J, K)` weight map and one window's activations.
"""

from __future__ import annotations

import copy
import itertools
import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from multimodalgen.encoder.network import UNet3D

DEFAULT_PATCH = 128
DEFAULT_OVERLAP = 0.25


def fold_batchnorm(model: UNet3D) -> UNet3D:
    """Copy of an eval-mode model with every Conv3d->BatchNorm3d pair folded into one biased Conv3d (faster).

    Only valid for inference (uses the BatchNorm running statistics). Outputs match the unfolded model to float
    rounding.
    """
    model = copy.deepcopy(model).eval()
    for module in model.modules():
        if not isinstance(module, nn.Sequential):
            continue
        children = list(module.children())
        for i in range(len(children) - 1):
            conv, bn = children[i], children[i + 1]
            if isinstance(conv, nn.Conv3d) and isinstance(bn, nn.BatchNorm3d):
                scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
                fused = nn.Conv3d(conv.in_channels, conv.out_channels, conv.kernel_size, padding=conv.padding,
                                  bias=True, padding_mode=conv.padding_mode).to(conv.weight.device)
                with torch.no_grad():
                    fused.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1, 1))
                    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
                    fused.bias.copy_((bias - bn.running_mean) * scale + bn.bias)
                module[i] = fused
                module[i + 1] = nn.Identity()
    return model


def _window_weight(size: tuple[int, int, int], device: torch.device) -> torch.Tensor:
    """Separable blending weight `(I, J, K)`: 1 in the middle half, linear ramp to 0.05 at the faces."""
    ws = []
    for n in size:
        t = (torch.arange(n, device=device, dtype=torch.float32) + 0.5) / n   # (0, 1)
        w = torch.clamp(1.0 - (2.0 * (t - 0.5)).abs(), min=0.0) * 2.0          # tent, peak 2 at the centre
        ws.append(torch.clamp(w, min=0.05, max=1.0))
    return ws[0][:, None, None] * ws[1][None, :, None] * ws[2][None, None, :]


def _starts(length: int, window: int, step: int) -> list[int]:
    if length <= window:
        return [0]
    starts = list(range(0, length - window, step)) + [length - window]
    return sorted(set(starts))


def extract_features(image: np.ndarray | torch.Tensor, model: UNet3D, device: torch.device | str = "cpu",
                     patch: int | tuple[int, int, int] = DEFAULT_PATCH, overlap: float = DEFAULT_OVERLAP,
                     progress=None) -> np.ndarray:
    """Features `(C_out, I, J, K)` float32 of a normalised `(I, J, K)` float32 image (voxel grid unchanged).

    Args:
        image: intensities already normalised to ~[0, 1] (see `multimodalgen.intensity.normalize`).
        model: the encoder (put in eval mode here; use `load_encoder`).
        device: where the network runs; the output is assembled on the CPU in numpy.
        patch: window size in voxels (rounded up to the network divisor; clipped to the padded image).
        overlap: fraction of a window shared with its neighbour, in [0, 0.9].
        progress: optional `multimodalgen.progress.Progress` (update + check_cancelled per window).
    """
    device = torch.device(device)
    arr = torch.as_tensor(np.asarray(image, dtype=np.float32) if not torch.is_tensor(image) else image,
                          dtype=torch.float32)
    if arr.dim() != 3:
        raise ValueError(f"extract_features expects an (I, J, K) image, got shape {tuple(arr.shape)}")
    if not 0.0 <= overlap <= 0.9:
        raise ValueError(f"overlap must be in [0, 0.9], got {overlap}")
    div = model.config.divisor
    shape = tuple(arr.shape)
    padded = tuple(int(math.ceil(n / div) * div) for n in shape)
    pads = [p - n for n, p in zip(shape, padded)]
    x = arr
    if any(pads):
        x = F.pad(arr[None, None], [0, pads[2], 0, pads[1], 0, pads[0]], mode="replicate")[0, 0]
    p = (patch,) * 3 if isinstance(patch, int) else tuple(patch)
    p = tuple(min(int(math.ceil(pi / div) * div), n) for pi, n in zip(p, padded))
    steps = tuple(max(div, int(round(pi * (1.0 - overlap)) // div * div)) for pi in p)
    grids = [_starts(n, pi, si) for n, pi, si in zip(padded, p, steps)]
    windows = list(itertools.product(*grids))
    c_out = model.config.out_channels
    out = torch.zeros((c_out,) + padded, dtype=torch.float32)
    wsum = torch.zeros(padded, dtype=torch.float32)
    weight = _window_weight(p, torch.device("cpu")) if len(windows) > 1 else torch.ones(p)
    model = model.to(device).eval()
    with torch.inference_mode():
        for n, (i, j, k) in enumerate(windows):
            if progress is not None:
                progress.check_cancelled()
            crop = x[i:i + p[0], j:j + p[1], k:k + p[2]].to(device)
            feats = model(crop[None, None])[0].float().cpu()
            out[:, i:i + p[0], j:j + p[1], k:k + p[2]] += feats * weight
            wsum[i:i + p[0], j:j + p[1], k:k + p[2]] += weight
            if progress is not None:
                progress.update("features", (n + 1) / len(windows), f"window {n + 1}/{len(windows)}")
    out /= wsum
    return out[:, :shape[0], :shape[1], :shape[2]].contiguous().numpy()


def features_for_volume(volume, model: UNet3D | None = None, device: torch.device | str = "cpu",
                        patch: int | tuple[int, int, int] = DEFAULT_PATCH, overlap: float = DEFAULT_OVERLAP,
                        progress=None):
    """Encoder features of a scalar `Volume` as a `Volume` `(16, I, J, K)` float32 on the same grid/affine.

    Intensities are normalised with `multimodalgen.intensity.normalize(array, volume.modality)` first. With no
    `model`, the shipped default encoder is loaded (`load_encoder`).
    """
    from multimodalgen.errors import UserInputError
    from multimodalgen.intensity import normalize

    if volume.array.ndim != 3:
        raise UserInputError("features need a single-channel image", expected="an (I,J,K) volume",
                             got=f"shape {tuple(volume.array.shape)}", fix="pick one channel or modality first")
    if model is None:
        from multimodalgen.encoder.weights import load_encoder

        model = load_encoder(device=device)
    image = normalize(volume.array, volume.modality)
    feats = extract_features(image, model, device, patch=patch, overlap=overlap, progress=progress)
    metadata = dict(volume.metadata)
    metadata["source_modality"] = volume.modality
    return type(volume)(feats, volume.affine.copy(), modality="FEATURES", metadata=metadata)
