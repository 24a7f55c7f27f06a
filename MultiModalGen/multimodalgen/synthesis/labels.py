"""Random label ensembles: smooth random shapes, elastic deformation, foreground mask and envelope.

`sample_label_params(cfg, rng, shape)` draws every random choice into a `LabelParams` (plus one integer seed for
the smooth noise fields); `render_labels(params, device)` is deterministic given the params and the device.
The output is an int64 `(I, J, K)` label map with consecutive labels 0..L-1 (L typically 2-40). Labels carry
no meaning: they only say "same structure" vs "different structure".

Shape kinds (normalised coordinates, longest axis in [-1, 1]):
    0 superquadric: ||R (x - c) / r||_p < 1 + roughness * noise
    1 noise blob:   ellipsoid level set strongly perturbed by smooth noise (irregular, may have holes)
    2 hollow shell: |f - (1 - t)| < t with f the ellipsoid function (a thin ribbon, cortex/wall-like)
Shapes are painted in order, later ones overwrite earlier ones.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn.functional as F

from multimodalgen.synthesis.config import LabelConfig
from multimodalgen.synthesis.fields import (make_generator, max_filter, min_filter, multiscale_noise,
                                            normalized_grid, smooth_noise)

_CHUNK = 6  # shapes rendered together (bounds memory to ~_CHUNK * 4 voxels-sized float tensors)


@dataclasses.dataclass
class LabelParams:
    """Every random choice of one label ensemble. Arrays are numpy float64; `seed` drives the noise fields."""

    shape: tuple[int, int, int]
    seed: int
    partition_regions: int            # 0 = no background partition
    kinds: np.ndarray                 # (n,) int in {0, 1, 2}
    centers: np.ndarray               # (n, 3) normalised
    radii: np.ndarray                 # (n, 3) normalised
    rotations: np.ndarray             # (n, 3, 3)
    exponents: np.ndarray             # (n,)
    roughness: np.ndarray             # (n,)
    thickness: np.ndarray             # (n,) relative shell thickness (kind 2 only)
    elastic_std: float
    mask: bool
    mask_center: np.ndarray           # (3,)
    mask_radii: np.ndarray            # (3,)
    mask_roughness: float
    envelope_width: int               # 0 = no envelope

    @property
    def n_shapes(self) -> int:
        return int(self.kinds.shape[0])


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random 3x3 rotation matrix (QR of a Gaussian matrix, sign-fixed), possibly with a reflection."""
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    q = q * np.sign(np.diag(r))[None, :]
    return q


def sample_label_params(cfg: LabelConfig, rng: np.random.Generator, shape: tuple[int, int, int]) -> LabelParams:
    """Draw the parameters of one label ensemble on a grid of `shape` voxels."""
    n = int(rng.integers(cfg.min_shapes, cfg.max_shapes + 1))
    kinds = rng.choice(3, size=n, p=np.asarray(cfg.kind_probs))
    extent = np.asarray(shape, dtype=np.float64) / max(shape)  # half-extent per axis in normalised units
    mask = bool(rng.random() < cfg.p_foreground_mask)
    mask_center = rng.uniform(-cfg.mask_offset, cfg.mask_offset, size=3) * extent
    mask_radii = rng.uniform(*cfg.mask_radius, size=3) * extent
    if mask:  # put the shapes where the foreground will be
        centers = mask_center + rng.uniform(-0.9, 0.9, size=(n, 3)) * mask_radii
    else:
        centers = rng.uniform(-0.9, 0.9, size=(n, 3)) * extent
    # log-uniform radii favour many small structures and a few large ones; mild anisotropy per axis
    lo, hi = np.log(cfg.radius[0]), np.log(cfg.radius[1])
    base = np.exp(rng.uniform(lo, hi, size=(n, 1)))
    radii = base * np.exp(rng.uniform(-0.5, 0.5, size=(n, 3)))
    rotations = np.stack([random_rotation(rng) for _ in range(n)])
    exponents = rng.uniform(*cfg.exponent, size=n)
    roughness = rng.uniform(*cfg.roughness, size=n)
    roughness = np.where(kinds == 1, roughness + 0.4, roughness)
    thickness = rng.uniform(*cfg.shell_thickness, size=n)
    partition = int(rng.integers(cfg.partition_regions[0], cfg.partition_regions[1] + 1)) \
        if rng.random() < cfg.p_partition else 0
    envelope = int(rng.integers(cfg.envelope_width[0], cfg.envelope_width[1] + 1)) \
        if (mask and rng.random() < cfg.p_envelope) else 0
    return LabelParams(
        shape=tuple(int(s) for s in shape), seed=int(rng.integers(0, 2**31 - 1)), partition_regions=partition,
        kinds=kinds.astype(np.int64), centers=centers, radii=radii, rotations=rotations, exponents=exponents,
        roughness=roughness, thickness=thickness, elastic_std=float(rng.uniform(*cfg.elastic_std)),
        mask=mask, mask_center=mask_center, mask_radii=mask_radii, mask_roughness=float(rng.uniform(0.0, 0.25)),
        envelope_width=envelope)


def _shape_functions(x: torch.Tensor, params: LabelParams, idx: list[int], gen: torch.Generator) -> torch.Tensor:
    """Implicit functions `(m, I, J, K)` (inside where < 1) of the shapes `idx`, at warped coordinates x."""
    dev = x.device
    c = torch.as_tensor(params.centers[idx], dtype=torch.float32, device=dev)
    r = torch.as_tensor(params.radii[idx], dtype=torch.float32, device=dev)
    rot = torch.as_tensor(params.rotations[idx], dtype=torch.float32, device=dev)
    p = torch.as_tensor(params.exponents[idx], dtype=torch.float32, device=dev).view(-1, 1, 1, 1)
    kinds = torch.as_tensor(params.kinds[idx], device=dev).view(-1, 1, 1, 1)
    local = torch.einsum("ijkc,mdc->mijkd", x, rot) - torch.einsum("mc,mdc->md", c, rot)[:, None, None, None, :]
    local = (local / r[:, None, None, None, :]).abs().clamp_min(1e-6)
    p_eff = torch.where(kinds == 1, torch.full_like(p, 2.0), p)
    f = local.pow(p_eff[..., None]).sum(-1).pow(1.0 / p_eff)
    noise = smooth_noise(gen, len(idx), 7, tuple(x.shape[:3]), dev)
    rough = torch.as_tensor(params.roughness[idx], dtype=torch.float32, device=dev).view(-1, 1, 1, 1)
    f = f + rough * noise
    t = torch.as_tensor(params.thickness[idx], dtype=torch.float32, device=dev).view(-1, 1, 1, 1)
    shell = (f - (1.0 - t)).abs() / t  # < 1 inside the ribbon
    return torch.where(kinds == 2, shell, f)


def render_labels(params: LabelParams, device: torch.device | str = "cpu") -> torch.Tensor:
    """Deterministically render `params` into an int64 `(I, J, K)` label map with consecutive labels 0..L-1."""
    device = torch.device(device)
    shape = params.shape
    gen = make_generator(params.seed, device)
    # implicit functions are evaluated on a grid coarser by 2 (shapes are smooth) and upsampled trilinearly
    coarse = tuple(max(4, (n + 1) // 2) for n in shape)
    x = _coarse_coordinates(shape, coarse, device)
    if params.elastic_std > 0:
        disp = multiscale_noise(gen, 3, coarse, (4, 8, 16), (0.5, 0.75, 1.0), device) * params.elastic_std
        x = x + disp.permute(1, 2, 3, 0)
    labels = torch.zeros(shape, dtype=torch.int64, device=device)
    offset = 0
    if params.partition_regions > 0:
        fields = smooth_noise(gen, params.partition_regions, 4, shape, device)
        labels = fields.argmax(0)
        offset = params.partition_regions
    for start in range(0, params.n_shapes, _CHUNK):
        idx = list(range(start, min(start + _CHUNK, params.n_shapes)))
        f = _upsample(_shape_functions(x, params, idx, gen), shape)
        for m, k in enumerate(idx):
            labels = torch.where(f[m] < 1.0, torch.full_like(labels, offset + k + 1), labels)
    if params.mask:
        c = torch.as_tensor(params.mask_center, dtype=torch.float32, device=device)
        r = torch.as_tensor(params.mask_radii, dtype=torch.float32, device=device)
        f = ((x - c) / r).pow(2).sum(-1).sqrt() + params.mask_roughness * smooth_noise(gen, 1, 5, coarse, device)[0]
        f = _upsample(f[None], shape)[0]
        inside = f < 1.0
        labels = torch.where(inside, labels + 1, torch.zeros_like(labels))
        if params.envelope_width > 0:
            w = params.envelope_width
            shell = max_filter(inside, w) & ~min_filter(inside, w)
            labels = torch.where(shell, labels.max() + 1, labels)
    return relabel_consecutive(labels)


def _coarse_coordinates(shape: tuple[int, int, int], coarse: tuple[int, int, int],
                        device: torch.device) -> torch.Tensor:
    """Normalised coordinates `(i, j, k, 3)` of a `coarse` grid spanning the same extent as the `shape` grid."""
    full = normalized_grid(shape, device)
    lo, hi = full[0, 0, 0], full[-1, -1, -1]
    axes = [torch.linspace(float(lo[a]), float(hi[a]), coarse[a], device=device) for a in range(3)]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1)


def _upsample(f: torch.Tensor, shape: tuple[int, int, int]) -> torch.Tensor:
    """Trilinear `(m, i, j, k)` -> `(m, I, J, K)` (corners aligned, matching `_coarse_coordinates`)."""
    return F.interpolate(f[None], size=tuple(shape), mode="trilinear", align_corners=True)[0]


def relabel_consecutive(labels: torch.Tensor) -> torch.Tensor:
    """Map the labels present to 0..L-1 keeping their order (int64, same shape)."""
    _, inverse = torch.unique(labels, return_inverse=True)
    return inverse.reshape(labels.shape).to(torch.int64)
