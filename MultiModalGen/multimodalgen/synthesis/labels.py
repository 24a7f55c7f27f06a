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

Layered phantoms (probability `LabelConfig.p_layered`, needs a foreground mask): the inside of the mask is
replaced by nested bands of its implicit function f (core, one or more ribbons, outer fluid), each band boundary
folded by its own smooth noise (gyri-like); a few deep cavities take the OUTER band's label (ventricles share the
label of the outer fluid) and a few deep blobs take the second band's label (nuclei share the ribbon's label).
So one label can have several disconnected parts of different geometry, as tissues do in real anatomy.
With probability `LabelConfig.p_head` (synth-1.2) the bands fill only the inner part of the mask (a "brain") and
two more labels, a skull-like then a scalp-like shell, fill the rest up to the mask's edge: real heads put bone and
skin, not background, outside the outer fluid.
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
    layer_bounds: np.ndarray | None = None    # (n_bands - 1,) decreasing thresholds of f, None = not layered
    layer_fold: np.ndarray | None = None      # (n_bands - 1,) folding noise amplitude per boundary
    layer_fold_grid: int = 0
    blob_centers: np.ndarray | None = None    # (n_blobs, 3) relative to the mask (in mask radii)
    blob_radii: np.ndarray | None = None      # (n_blobs,) in mask radii
    blob_is_cavity: np.ndarray | None = None  # (n_blobs,) bool: cavity (outer label) or nucleus (ribbon label)
    head_bounds: np.ndarray | None = None     # (2,) increasing f thresholds: brain | skull | scalp; None = no head

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
    params = LabelParams(
        shape=tuple(int(s) for s in shape), seed=int(rng.integers(0, 2**31 - 1)), partition_regions=partition,
        kinds=kinds.astype(np.int64), centers=centers, radii=radii, rotations=rotations, exponents=exponents,
        roughness=roughness, thickness=thickness, elastic_std=float(rng.uniform(*cfg.elastic_std)),
        mask=mask, mask_center=mask_center, mask_radii=mask_radii, mask_roughness=float(rng.uniform(0.0, 0.25)),
        envelope_width=envelope)
    if cfg.p_layered > 0 and rng.random() < cfg.p_layered and mask:  # draws nothing when p_layered == 0
        _sample_layers(cfg, rng, params)
    return params


def _sample_layers(cfg: LabelConfig, rng: np.random.Generator, params: LabelParams) -> None:
    """Fill the layered-phantom fields of `params` (see the module docstring)."""
    n_bands = int(rng.integers(cfg.layer_count[0], cfg.layer_count[1] + 1))
    widths = rng.uniform(*cfg.layer_width, size=n_bands - 1)
    params.layer_bounds = 1.0 - np.cumsum(widths)
    params.layer_fold = rng.uniform(*cfg.layer_fold, size=n_bands - 1)
    params.layer_fold_grid = int(rng.integers(cfg.layer_fold_grid[0], cfg.layer_fold_grid[1] + 1))
    n_cav = int(rng.integers(cfg.layer_cavities[0], cfg.layer_cavities[1] + 1))
    n_nuc = int(rng.integers(cfg.layer_nuclei[0], cfg.layer_nuclei[1] + 1))
    n = n_cav + n_nuc
    inner = max(0.15, float(params.layer_bounds[-1]))  # keep blobs in the core
    params.blob_centers = rng.uniform(-0.6, 0.6, size=(n, 3)) * inner
    params.blob_radii = rng.uniform(0.08, 0.3, size=n) * inner
    params.blob_is_cavity = np.arange(n) < n_cav
    if cfg.p_head > 0 and rng.random() < cfg.p_head:  # drawn last: p_head == 0 leaves every other draw unchanged
        brain = rng.uniform(*cfg.head_brain_fraction)
        skull = brain + (1.0 - brain) * rng.uniform(0.3, 0.7)
        params.head_bounds = np.array([brain, skull])


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
    return render_labels_with_layers(params, device)[0]


def render_labels_with_layers(params: LabelParams, device: torch.device | str = "cpu"
                              ) -> tuple[torch.Tensor, list[int]]:
    """`render_labels` plus the final label value of each layered band, outermost first (`[]` when the ensemble
    is not layered; -1 for a band that ended up with no voxel)."""
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
        if params.layer_bounds is not None:
            base = int(labels.max()) + 1
            band_values = [base + b for b in range(len(params.layer_bounds) + 1)]
            head = params.head_bounds
            scale = 1.0 if head is None else float(head[0])     # the layers fill the brain part of the mask
            layered = _render_layers(params, f / scale, x, coarse, shape, gen, device, scale) + base
            labels = torch.where(inside, layered, labels)
            if head is not None:                                   # skull, then scalp, towards the mask's edge
                for h, t in enumerate(head):
                    labels = torch.where(inside & (f >= float(t)), torch.full_like(labels, base + len(band_values) + h),
                                         labels)
        if params.envelope_width > 0:
            w = params.envelope_width
            shell = max_filter(inside, w) & ~min_filter(inside, w)
            labels = torch.where(shell, labels.max() + 1, labels)
    values = torch.unique(labels)
    final = relabel_consecutive(labels)
    layer_labels = []
    if params.layer_bounds is not None:  # only ever set together with a mask
        present = values.tolist()
        layer_labels = [present.index(v) if v in present else -1 for v in band_values]
    return final, layer_labels


#: Anatomical roles of a layered phantom's labels (`label_roles`); -1 = no role (not layered, outside, middle band).
ROLE_NAMES = ("outer fluid", "ribbon", "core")


def label_roles(layer_labels: list[int], n_labels: int) -> torch.Tensor:
    """Role of every label `(n_labels,)` int64: 0 outer band (and its cavities), 1 second band (and its nuclei),
    2 core, -1 otherwise. `layer_labels` is the outermost-first list of `render_labels_with_layers`."""
    roles = torch.full((n_labels,), -1, dtype=torch.int64)
    if layer_labels:
        for band, role in ((0, 0), (1, 1), (len(layer_labels) - 1, 2)):
            if layer_labels[band] >= 0:
                roles[layer_labels[band]] = role
    return roles


def _render_layers(params: LabelParams, f: torch.Tensor, x: torch.Tensor, coarse: tuple[int, int, int],
                   shape: tuple[int, int, int], gen: torch.Generator, device: torch.device,
                   scale: float = 1.0) -> torch.Tensor:
    """Band index map `(I, J, K)` int64 (0 = outermost band ... n-1 = core) of a layered phantom.

    `f` `(I, J, K)` is the layered region's implicit function (< 1 inside, ~0 at its centre), `x` the (warped)
    coarse coordinates `(i, j, k, 3)`, `scale` the layered region's size relative to the mask (< 1 with a head)."""
    bounds = params.layer_bounds
    # boundaries fold together (a shared field, like a cortical ribbon following its gyri) plus a little each
    folds = smooth_noise(gen, len(bounds) + 1, params.layer_fold_grid, coarse, device)
    folds = _upsample(folds[:1] + 0.35 * folds[1:], shape)
    band = torch.zeros(shape, dtype=torch.int64, device=device)
    for b, (t, amp) in enumerate(zip(bounds, params.layer_fold)):
        band = band + (f < float(t) + float(amp) * folds[b]).long()
    if params.blob_centers is not None and len(params.blob_centers):
        c0 = torch.as_tensor(params.mask_center, dtype=torch.float32, device=device)
        r0 = torch.as_tensor(params.mask_radii, dtype=torch.float32, device=device)
        rel = (x - c0) / (r0 * scale)                                       # coordinates relative to the region
        noise = smooth_noise(gen, len(params.blob_radii), 5, coarse, device)
        for i, (c, r) in enumerate(zip(params.blob_centers, params.blob_radii)):
            d = (rel - torch.as_tensor(c, dtype=torch.float32, device=device)).norm(dim=-1) / float(r)
            blob = _upsample((d + 0.3 * noise[i])[None], shape)[0] < 1.0
            value = 0 if params.blob_is_cavity[i] else min(1, len(bounds))
            band = torch.where(blob, torch.full_like(band, value), band)
    return band


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
