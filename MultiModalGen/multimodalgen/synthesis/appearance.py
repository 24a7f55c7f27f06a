"""Random appearance of one view of a label map: MR-like, CT-like or PET-like intensities with artefacts.

`sample_appearance_params(cfg, rng, n_labels)` draws all random choices; `render_appearance(labels, params,
device)` is deterministic given them (the voxel-wise noise comes from a generator seeded with `params.seed`).
The rendered image is float32 `(I, J, K)` normalised to [0, 1] with robust (0.5, 99.5) percentiles, the way
`multimodalgen.intensity.normalize` treats real MR/PET images at inference.

Pipeline: per-label Gaussian intensities (GMM) -> multiplicative texture -> blur / partial volume ->
low-resolution (anisotropic) acquisition -> bias field -> Gaussian or Rician noise -> robust [0, 1] -> gamma.
CT-like mode draws label means from tissue HU ranges (air, lung, fat, fluid, soft tissue, enhanced, bone) and
applies a random display window; PET-like mode has a few hot labels, strong blur and low resolution.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from multimodalgen.synthesis.config import AppearanceConfig
from multimodalgen.synthesis.fields import (gaussian_blur, lowres_acquisition, make_generator, multiscale_noise,
                                            smooth_noise)

MODES = ("mr", "ct", "pet")

# (low, high) HU of tissue classes for the CT-like mode and their sampling weights
_CT_TISSUES = ((-1000.0, -950.0), (-900.0, -500.0), (-150.0, -60.0), (-10.0, 25.0), (25.0, 80.0),
               (80.0, 300.0), (300.0, 1800.0))
_CT_WEIGHTS = (0.08, 0.07, 0.15, 0.15, 0.35, 0.1, 0.1)
# (low, high) HU display windows: brain, soft tissue, wide, bone, full range
_CT_WINDOWS = ((0.0, 80.0), (-160.0, 240.0), (-1000.0, 1000.0), (-500.0, 1300.0), (-1024.0, 3071.0))


@dataclasses.dataclass
class AppearanceParams:
    """Every random choice of one view's appearance. `means`/`stds` are indexed by label (length n_labels)."""

    mode: str
    seed: int
    means: np.ndarray
    stds: np.ndarray
    texture_stds: tuple[float, float, float, float]   # at scales 4, 8, 16, 32 voxels
    blur_sigma: tuple[float, float, float]
    lowres_factors: tuple[float, float, float]
    bias_std: float
    noise_std: float
    rician: bool
    gamma: float
    window: tuple[float, float] | None   # CT: HU window mapped to [0, 1]; None: robust percentiles


def sample_appearance_params(cfg: AppearanceConfig, rng: np.random.Generator, n_labels: int) -> AppearanceParams:
    """Draw the appearance of one view for a label map with `n_labels` labels (0..n_labels-1)."""
    mode = MODES[int(rng.choice(3, p=np.asarray(cfg.mode_probs)))]
    window = None
    lowres = (1.0, 1.0, 1.0)
    if rng.random() < cfg.p_lowres:
        lowres = tuple(float(v) for v in rng.uniform(1.0, 2.0, size=3))
        axis = int(rng.integers(0, 3))  # one thick-slice axis
        lowres = tuple(float(rng.uniform(*cfg.lowres_factor)) if a == axis else lowres[a] for a in range(3))
    blur = tuple(float(v) for v in rng.uniform(*cfg.blur_sigma, size=3)) if rng.random() < cfg.p_blur \
        else (0.0, 0.0, 0.0)
    if mode == "mr":
        means = rng.uniform(0.0, 1.0, size=n_labels)
        if rng.random() < cfg.p_zero_background:
            means[0] = 0.0
        stds = rng.uniform(*cfg.label_std, size=n_labels)
        noise = float(rng.uniform(*cfg.noise_std))
    elif mode == "ct":
        classes = rng.choice(len(_CT_TISSUES), size=n_labels, p=np.asarray(_CT_WEIGHTS))
        means = np.array([rng.uniform(*_CT_TISSUES[c]) for c in classes])
        if rng.random() < 0.5:
            means[0] = rng.uniform(-1024.0, -950.0)  # air around the body
        stds = rng.uniform(3.0, 25.0, size=n_labels)
        noise = float(rng.uniform(0.0, 0.04))
        window = tuple(float(v) for v in _CT_WINDOWS[int(rng.integers(0, len(_CT_WINDOWS)))])
    else:  # pet: mostly low uptake, a few hot structures, blurry and low resolution
        means = rng.uniform(0.0, 0.3, size=n_labels)
        hot = rng.random(n_labels) < 0.25
        means[hot] = rng.uniform(0.4, 1.0, size=int(hot.sum()))
        means[0] = rng.uniform(0.0, 0.05)
        stds = rng.uniform(0.0, 0.05, size=n_labels)
        noise = float(rng.uniform(0.02, 0.1))
        blur = tuple(float(v) for v in rng.uniform(1.0, 2.5, size=3))
        lowres = tuple(float(v) for v in rng.uniform(1.5, 3.0, size=3))
    return AppearanceParams(
        mode=mode, seed=int(rng.integers(0, 2**31 - 1)), means=means, stds=stds,
        texture_stds=tuple(float(v) for v in rng.uniform(*cfg.texture_std, size=4)),
        blur_sigma=blur, lowres_factors=lowres,
        bias_std=float(rng.uniform(*cfg.bias_std)) if rng.random() < cfg.p_bias else 0.0,
        noise_std=noise, rician=bool(mode == "mr" and rng.random() < cfg.p_rician),
        gamma=float(np.exp(rng.uniform(*cfg.gamma_log))) if rng.random() < cfg.p_gamma else 1.0,
        window=window)


def robust_unit_range(image: torch.Tensor, low_q: float = 0.005, high_q: float = 0.995) -> torch.Tensor:
    """Map the `low_q`..`high_q` quantiles of a volume to [0, 1] and clip (quantiles on a strided subsample)."""
    flat = image.reshape(-1)
    step = max(1, flat.numel() // 200_000)
    sample = flat[::step]
    lo, hi = torch.quantile(sample, torch.tensor([low_q, high_q], device=image.device, dtype=image.dtype))
    return ((image - lo) / (hi - lo).clamp_min(1e-6)).clamp(0.0, 1.0)


def render_appearance(labels: torch.Tensor, params: AppearanceParams,
                      device: torch.device | str | None = None) -> torch.Tensor:
    """Render one view of an int64 `(I, J, K)` label map: float32 `(I, J, K)` in [0, 1]. Deterministic."""
    device = torch.device(device) if device is not None else labels.device
    labels = labels.to(device)
    shape = tuple(labels.shape)
    gen = make_generator(params.seed, device)
    means = torch.as_tensor(params.means, dtype=torch.float32, device=device)
    stds = torch.as_tensor(params.stds, dtype=torch.float32, device=device)
    img = means[labels] + stds[labels] * torch.randn(shape, generator=gen, device=device)
    if params.mode == "ct":
        img = img - means.min()  # make positive before multiplicative effects; shifted back below
    texture = multiscale_noise(gen, 1, shape, (4, 8, 16, 32), params.texture_stds, device)[0]
    img = img * (1.0 + texture)
    img = gaussian_blur(img, params.blur_sigma)
    if max(params.lowres_factors) > 1.05:
        img = lowres_acquisition(img, params.lowres_factors)
    if params.bias_std > 0:
        img = img * torch.exp(params.bias_std * smooth_noise(gen, 1, 4, shape, device)[0])
    if params.mode == "ct":
        img = img + means.min()
        lo, hi = params.window
        img = img + params.noise_std * (hi - lo) * torch.randn(shape, generator=gen, device=device)
        img = ((img - lo) / (hi - lo)).clamp(0.0, 1.0)
    else:
        scale = float(torch.clamp(img.abs().max(), min=1e-6))
        n1 = params.noise_std * scale * torch.randn(shape, generator=gen, device=device)
        if params.rician:
            n2 = params.noise_std * scale * torch.randn(shape, generator=gen, device=device)
            img = torch.sqrt((img + n1) ** 2 + n2 ** 2)
        else:
            img = (img + n1).clamp_min(0.0)
        img = robust_unit_range(img)
    if params.gamma != 1.0:
        img = img.clamp_min(0.0) ** params.gamma
    return img.to(torch.float32)
