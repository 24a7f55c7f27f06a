"""Samples of the engine: one label map rendered as several views with independent appearance.

`sample_params(cfg, seed)` -> `SampleParams` (every random choice; replayable), `render_sample(params, device)`
-> `(images (V, I, J, K) float32 in [0, 1], labels (V, I, J, K) int64)`. A view may get its own small smooth
deformation of the label map (then its labels differ slightly from view 0's), so labels are returned per view.
`generate_batch(cfg, seeds, device)` stacks several samples: images `(B, V, I, J, K)`, labels `(B, V, I, J, K)`.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import torch

from multimodalgen.synthesis.appearance import AppearanceParams, render_appearance, sample_appearance_params
from multimodalgen.synthesis.config import EngineConfig
from multimodalgen.synthesis.fields import make_generator, multiscale_noise, warp_labels
from multimodalgen.synthesis.labels import LabelParams, label_roles, render_labels_with_layers, sample_label_params


@dataclasses.dataclass
class SampleParams:
    """All random choices of one sample: the label ensemble, one appearance and optional deformation per view."""

    seed: int
    labels: LabelParams
    appearances: list[AppearanceParams]
    deform_seeds: list[int | None]     # None: the view uses the label map as is
    deform_voxels: float


def sample_params(cfg: EngineConfig, seed: int) -> SampleParams:
    """Draw one sample's parameters from `cfg` with a numpy generator seeded by `seed`."""
    rng = np.random.default_rng(int(seed))
    label_params = sample_label_params(cfg.labels, rng, cfg.shape)
    # the number of labels is only known after rendering; draw appearance for the maximum possible count
    max_labels = label_params.n_shapes + label_params.partition_regions + 3
    appearances = [sample_appearance_params(cfg.appearance, rng, max_labels) for _ in range(cfg.n_views)]
    deform = [int(rng.integers(0, 2**31 - 1)) if (v > 0 and rng.random() < cfg.p_view_deform) else None
              for v in range(cfg.n_views)]
    return SampleParams(seed=int(seed), labels=label_params, appearances=appearances, deform_seeds=deform,
                        deform_voxels=cfg.view_deform_voxels)


def render_sample(params: SampleParams, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Deterministically render a sample: images `(V, I, J, K)` float32, labels `(V, I, J, K)` int64."""
    images, labels, _ = render_sample_with_roles(params, device)
    return images, labels


def render_sample_with_roles(params: SampleParams, device: torch.device | str = "cpu"
                             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`render_sample` plus the anatomical role map of each view `(V, I, J, K)` int64 (`labels.label_roles`:
    0 outer fluid, 1 ribbon, 2 core of a layered phantom; -1 elsewhere and for non-layered samples)."""
    device = torch.device(device)
    base, layer_labels = render_labels_with_layers(params.labels, device)
    roles = label_roles(layer_labels, int(base.max()) + 1).to(device)
    images, labels = [], []
    for view, appearance in enumerate(params.appearances):
        lab = base
        seed = params.deform_seeds[view]
        if seed is not None and params.deform_voxels > 0:
            gen = make_generator(seed, device)
            disp = multiscale_noise(gen, 3, tuple(base.shape), (8, 16), (0.5, 0.5), device)
            disp = disp * (params.deform_voxels / disp.abs().max().clamp_min(1e-6))
            lab = warp_labels(base, disp)
        images.append(render_appearance(lab, appearance, device))
        labels.append(lab)
    labels_t = torch.stack(labels)
    return torch.stack(images), labels_t, roles[labels_t]


def generate_batch(cfg: EngineConfig, seeds: list[int], device: torch.device | str = "cpu",
                   with_roles: bool = False):
    """Render samples for `seeds`: images `(B, V, I, J, K)` float32, labels `(B, V, I, J, K)` int64 (and, with
    `with_roles`, role maps `(B, V, I, J, K)` int64, see `render_sample_with_roles`)."""
    out = [render_sample_with_roles(sample_params(cfg, s), device) for s in seeds]
    batch = (torch.stack([o[0] for o in out]), torch.stack([o[1] for o in out]))
    return batch + (torch.stack([o[2] for o in out]),) if with_roles else batch


def measure_throughput(cfg: EngineConfig, n_samples: int = 4, device: torch.device | str = "cpu",
                       seed: int = 0) -> float:
    """Samples (label map + all views) per second rendered on `device` (one warm-up sample not counted)."""
    render_sample(sample_params(cfg, seed), device)
    t0 = time.perf_counter()
    for i in range(n_samples):
        render_sample(sample_params(cfg, seed + 1 + i), device)
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
    return n_samples / (time.perf_counter() - t0)
