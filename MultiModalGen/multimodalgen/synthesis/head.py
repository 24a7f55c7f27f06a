"""synth-2 head anatomy: an individual-looking head label map drawn from a population tissue-probability map.

SPM's TPM is a population average, smoother than any one brain. A subject is made individual in three steps, all
on the output grid, all replayable from `HeadParams` (sampled first, then rendered deterministically):

1. Geometry: a random rigid + scale/shear pose (rotation up to `max_rotation_deg` per axis, optional left-right
   flip), a random crop centre (partial heads), and a SynthMorph-style two-scale smooth elastic displacement (mm).
   The tissue probabilities are resampled (trilinear) onto an `(I, J, K)` grid of `spacing` mm.
2. Individual anatomy, as additive terms on the class log-probabilities before a hard argmax:
   - cortical folding: band-passed noise (3-6 mm) pushes white matter into the grey ribbon (gyri) where positive
     and CSF into it (sulci) where negative, inside the brain;
   - cortical thickness: a global grey-matter bias (thin <-> thick cortex);
   - ventricle size: a CSF bias inside deep white matter (small <-> atrophic ventricles);
   - sulcal CSF: a CSF bias in the cortical band (young <-> atrophic);
   - skull thickness: a bone bias;
   - extracerebral CSF thickness: CSF outside the brain (where the map gives bone, soft tissue or air any
     probability) farther than `csf_shell_mm` from grey/white matter becomes skull. TPM's argmax puts a 5-10 mm
     CSF band around the brain (the average of many brains' sulci and skull edges); one adult's subarachnoid space
     is 1-4 mm at the convexity, wider with atrophy (synth-2.2);
   - boundary jitter: smooth noise (1-2 voxels) on every class, so no two subjects share a boundary.
3. Texture sub-classes: each class is split into 1-3 sub-classes by thresholds of a smooth noise field; renderers
   give sub-classes slightly different tissue properties. The skull is layered instead (synth-2.2): inner and
   outer tables of cortical bone (`skull_table_mm` thick; sub-class 0, dark in every MR contrast, bright in CT)
   around diploe marrow (sub-class 1, bright in T1) where the skull is thick enough, as in a real calvarium. With
   bright marrow patches touching the brain, a network learns "a dark band outside the brain is CSF", which
   labels a real T1's inner table as CSF.

Output classes (`HEAD_CLASSES`, the personalized model's label values): 0 background/air, 1 grey matter,
2 white matter, 3 CSF, 4 skull, 5 soft tissue.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch
import torch.nn.functional as F

from multimodalgen.synthesis.fields import make_generator, max_filter, multiscale_noise, smooth_noise

#: Default range (mm, per axis) of a subject grid's centre around the brain's centre (`sample_head_params`); every
#: model up to personalized-v5 was trained with it, personalized-v6 and v7 with 60 (benchmarks/personalized/README.md).
MAX_OFFSET_MM = 25.0

HEAD_CLASSES = ("background", "grey matter", "white matter", "cerebrospinal fluid", "skull", "soft tissue")
GREY, WHITE, CSF, SKULL = (HEAD_CLASSES.index(n) for n in ("grey matter", "white matter", "cerebrospinal fluid", "skull"))
#: TPM channel order (GM, WM, CSF, bone, soft tissue, air) -> output class value.
_TPM_TO_CLASS = torch.tensor([1, 2, 3, 4, 5, 0])


@dataclasses.dataclass
class HeadParams:
    """Everything random about one head subject (see module docstring). Lengths in mm, angles in degrees."""

    seed: int
    shape: tuple[int, int, int]
    spacing: float
    rotation_deg: tuple[float, float, float]
    scale: tuple[float, float, float]
    shear: tuple[float, float, float]
    flip_lr: bool
    centre_offset_mm: tuple[float, float, float]
    elastic_mm: tuple[float, float]           # amplitudes at the coarse (~32 mm) and fine (~12 mm) scales
    folding: float
    fold_scale_mm: float
    thickness: float
    ventricles: float
    sulcal_csf: float
    skull: float
    jitter: float
    subclasses: tuple[int, ...]                # sub-classes per output class 0..5
    csf_shell_mm: float = math.inf             # extracerebral CSF kept within this distance of grey/white matter
    skull_table_mm: float = 0.0                # cortical-bone table thickness (0: skull sub-classes from noise)


def sample_head_params(rng: np.random.Generator, shape: tuple[int, int, int], spacing: float,
                       max_rotation_deg: float = 25.0, max_offset_mm: float = MAX_OFFSET_MM) -> HeadParams:
    """Draw one subject's parameters (ranges chosen to cover adult heads from thin to atrophic)."""
    params = HeadParams(
        seed=int(rng.integers(0, 2**31 - 1)), shape=tuple(int(s) for s in shape), spacing=float(spacing),
        rotation_deg=tuple(float(v) for v in rng.uniform(-max_rotation_deg, max_rotation_deg, 3)),
        scale=tuple(float(v) for v in np.exp(rng.normal(0.0, 0.07, 3))),
        shear=tuple(float(v) for v in rng.normal(0.0, 0.03, 3)),
        flip_lr=bool(rng.random() < 0.5),
        centre_offset_mm=tuple(float(v) for v in rng.uniform(-max_offset_mm, max_offset_mm, 3)),
        elastic_mm=(float(rng.uniform(0.0, 4.0)), float(rng.uniform(0.0, 1.5))),
        folding=float(rng.uniform(0.2, 1.0)), fold_scale_mm=float(rng.uniform(5.0, 8.0)),
        thickness=float(rng.uniform(-0.6, 0.6)), ventricles=float(rng.uniform(-1.0, 1.5)),
        sulcal_csf=float(rng.uniform(-0.5, 0.8)), skull=float(rng.uniform(-0.8, 0.8)),
        jitter=float(rng.uniform(0.1, 0.4)),
        subclasses=tuple(int(v) for v in rng.integers(1, 4, len(HEAD_CLASSES))),
        csf_shell_mm=float(rng.uniform(1.5, 4.0) if rng.random() < 0.8 else rng.uniform(4.0, 8.0)),
        skull_table_mm=float(rng.uniform(1.2, 2.5)))
    params.subclasses = tuple(max(2, n) if c == SKULL else n for c, n in enumerate(params.subclasses))  # tables+diploe
    return params


def _rotation(deg: tuple[float, float, float]) -> np.ndarray:
    ax, ay, az = (math.radians(d) for d in deg)
    rx = np.array([[1, 0, 0], [0, math.cos(ax), -math.sin(ax)], [0, math.sin(ax), math.cos(ax)]])
    ry = np.array([[math.cos(ay), 0, math.sin(ay)], [0, 1, 0], [-math.sin(ay), 0, math.cos(ay)]])
    rz = np.array([[math.cos(az), -math.sin(az), 0], [math.sin(az), math.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def output_affine(params: HeadParams, centre_ras: np.ndarray) -> np.ndarray:
    """Voxel -> RAS mm affine of the subject's output grid (the pose is applied to the anatomy, i.e. the output grid
    is posed inversely in the source's world)."""
    shear = np.eye(3)
    shear[0, 1], shear[0, 2], shear[1, 2] = params.shear
    linear = _rotation(params.rotation_deg) @ np.diag(params.scale) @ shear * params.spacing
    if params.flip_lr:
        linear = np.diag([-1.0, 1.0, 1.0]) @ linear
    centre = np.asarray(centre_ras, dtype=np.float64) + np.asarray(params.centre_offset_mm)
    half = (np.asarray(params.shape, dtype=np.float64) - 1.0) / 2.0
    affine = np.eye(4)
    affine[:3, :3] = linear
    affine[:3, 3] = centre - linear @ half
    return affine


def brain_centre(tissue: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """RAS mm centroid of the brain (GM + WM probability mass) of a `(6, I, J, K)` tissue map."""
    brain = tissue[0] + tissue[1]
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in brain.shape], indexing="ij"), -1).reshape(-1, 3)
    w = brain.reshape(-1)
    centroid = (idx * w[:, None]).sum(0) / max(float(w.sum()), 1e-6)
    return (affine @ np.append(centroid, 1.0))[:3]


def resample_tissue(tissue: torch.Tensor, tissue_affine: np.ndarray, params: HeadParams, centre_ras: np.ndarray,
                    gen: torch.Generator) -> torch.Tensor:
    """Tissue probabilities `(6, I, J, K)` on the subject's output grid (pose + elastic displacement)."""
    device = tissue.device
    affine = output_affine(params, centre_ras)
    src_from_out = np.linalg.inv(tissue_affine) @ affine
    shape = params.shape
    idx = torch.stack(torch.meshgrid(*[torch.arange(n, device=device, dtype=torch.float32) for n in shape],
                                     indexing="ij"), -1)
    m = torch.as_tensor(src_from_out, dtype=torch.float32, device=device)
    src = idx @ m[:3, :3].T + m[:3, 3]
    coarse, fine = params.elastic_mm
    if coarse > 0 or fine > 0:
        mm_per_vox = 1.0 / float(np.abs(np.linalg.inv(tissue_affine)[:3, :3]).max(axis=1).mean())   # source grid
        scales = (max(2, int(round(32.0 / params.spacing))), max(2, int(round(12.0 / params.spacing))))
        disp = multiscale_noise(gen, 3, shape, scales, (coarse / mm_per_vox, fine / mm_per_vox), device)
        src = src + disp.permute(1, 2, 3, 0)
    size = torch.tensor(tissue.shape[1:], dtype=torch.float32, device=device)
    grid = (2.0 * src / (size - 1.0) - 1.0).flip(-1)                     # grid_sample wants (x=K, y=J, z=I)
    out = F.grid_sample(tissue[None], grid[None], mode="bilinear", padding_mode="zeros", align_corners=True)[0]
    outside = out.sum(0, keepdim=True) < 0.5                               # outside the source field of view: air
    out[5:6] = torch.where(outside, torch.ones_like(out[5:6]), out[5:6])
    return out


def individual_classes(probs: torch.Tensor, params: HeadParams, gen: torch.Generator) -> torch.Tensor:
    """Hard output classes `(I, J, K)` int64 from posed probabilities `(6, I, J, K)` with the subject's anatomy
    terms (see module docstring)."""
    device = probs.device
    shape = tuple(probs.shape[1:])
    logp = torch.log(probs.clamp_min(1e-4))
    gm, wm, csf = probs[0], probs[1], probs[2]
    brain = (gm + wm + csf) > 0.5
    fold_vox = max(1.5, params.fold_scale_mm / params.spacing)
    fold = multiscale_noise(gen, 1, shape, (int(round(fold_vox)), int(round(2 * fold_vox))), (1.0, 0.5), device)[0]
    fold = fold / fold.std().clamp_min(1e-6)
    cortex = brain & (gm > 0.3)
    deep_wm = F.avg_pool3d(wm[None, None], 5, stride=1, padding=2)[0, 0] > 0.6
    logp[1] = logp[1] + torch.where(cortex, params.folding * fold, torch.zeros_like(fold))
    logp[2] = logp[2] - torch.where(cortex, params.folding * 0.8 * fold, torch.zeros_like(fold))
    logp[0] = logp[0] + params.thickness
    logp[2] = logp[2] + torch.where(deep_wm, torch.full_like(fold, params.ventricles), torch.zeros_like(fold))
    logp[2] = logp[2] + torch.where(cortex, torch.full_like(fold, params.sulcal_csf), torch.zeros_like(fold))
    logp[3] = logp[3] + params.skull
    logp = logp + params.jitter * smooth_noise(gen, 6, tuple(max(2, n // 2) for n in shape), shape, device)
    classes = _TPM_TO_CLASS.to(device)[logp.argmax(0)]
    return thin_extracerebral_csf(classes, probs[3:].sum(0) > 0.02, params.csf_shell_mm / params.spacing)


def thin_extracerebral_csf(classes: torch.Tensor, outer: torch.Tensor, shell_voxels: float) -> torch.Tensor:
    """Classes `(I, J, K)` with CSF in `outer` (bool, outside the brain) farther than `shell_voxels` (chessboard
    distance) from grey or white matter relabelled as skull. Ventricles and sulci (no outer probability) are kept."""
    if not math.isfinite(shell_voxels):
        return classes
    reach = max_filter((classes == GREY) | (classes == WHITE), max(0, int(round(shell_voxels))))
    far = (classes == CSF) & outer & ~reach
    return torch.where(far, torch.full_like(classes, SKULL), classes)


def subclass_map(classes: torch.Tensor, params: HeadParams, gen: torch.Generator) -> torch.Tensor:
    """Sub-class index `(I, J, K)` int64 in 0..subclasses[c]-1 for each voxel of class c (texture)."""
    shape = tuple(classes.shape)
    noise = smooth_noise(gen, 1, tuple(max(2, n // 3) for n in shape), shape, classes.device)[0]
    sub = torch.zeros_like(classes)
    for c, k in enumerate(params.subclasses):
        if k <= 1:
            continue
        qs = torch.linspace(-0.6, 0.6, k - 1, device=classes.device)
        sub = torch.where(classes == c, torch.bucketize(noise, qs), sub)
    if params.skull_table_mm > 0:
        sub = torch.where(classes == SKULL, skull_layers(classes == SKULL, params.skull_table_mm / params.spacing), sub)
    return sub


def skull_layers(skull: torch.Tensor, table_voxels: float) -> torch.Tensor:
    """Sub-class `(I, J, K)` int64 of skull voxels (bool `skull`): 0 (cortical table) within `table_voxels` of a
    non-skull voxel, on either face, else 1 (diploe). Zero outside the skull."""
    near_surface = max_filter(~skull, max(1, int(round(table_voxels))))
    return (skull & ~near_surface).to(torch.int64)


def render_head(tissue: torch.Tensor, tissue_affine: np.ndarray, params: HeadParams, centre_ras: np.ndarray
                ) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """One subject: `(classes (I, J, K) int64, subclasses (I, J, K) int64, voxel -> RAS affine)`.
    Deterministic given `params`."""
    gen = make_generator(params.seed, tissue.device)
    probs = resample_tissue(tissue, tissue_affine, params, centre_ras, gen)
    classes = individual_classes(probs, params, gen)
    return classes, subclass_map(classes, params, gen), output_affine(params, centre_ras)
