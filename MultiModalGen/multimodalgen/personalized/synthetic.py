"""Same-subject multi-contrast synthetic subjects (adapter on top of `multimodalgen.synthesis`).

A subject is one random label ensemble from the data engine (its "biology"). Brain-like subjects (probability
`SubjectConfig.p_brain`) are the engine's layered phantoms: outer band (with ventricle-like cavities) = CSF,
folded ribbon (with deep nuclei) = GM, core = WM, a possible extra band = GM or WM; everything outside the mask
is background/air or "other" tissue. Otherwise every engine label gets a random tissue class (background/air, CSF-,
GM-, WM-like, or "other" tissue). Each label gets subject-specific tissue properties (T1 and T2 relaxation times in
ms, proton density) drawn around its class prototype. Each modality m is then a FIXED,
population-wide mapping g_m of those properties -- the spin-echo signal S = PD (1 - exp(-TR/T1)) exp(-TE/T2) with
the modality's own (TR, TE) -- followed by the engine's acquisition nuisances (noise, texture, bias field, blur,
low resolution; gamma off so g_m stays fixed). Segmentation target: the tissue class map (0 background incl.
"other" tissue, 1 CSF, 2 GM, 3 WM), the same label set as the real GM/WM/CSF benchmark.

`sample_subject(seed, shape, modalities)` -> `(images (M, I, J, K) float32 in [0, 1], classes (I, J, K) int64)`,
deterministic given the seed.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from multimodalgen.synthesis.appearance import render_appearance, sample_appearance_params
from multimodalgen.synthesis.config import AppearanceConfig, EngineConfig, LabelConfig
from multimodalgen.synthesis.labels import render_labels_with_layers, sample_label_params

#: Subjects use the label engine with p_head = 0, where synth-1.2 renders exactly what synth-1.1 rendered, so
#: their version stays "synth-1.1+...". Bump it when the subjects' rendering changes.
SYNTH_VERSION = "synth-1.1+multicontrast-2"
CLASS_NAMES = ("background", "CSF", "GM", "WM")

#: Fixed acquisition of each modality, (TR ms, TE ms): the population-wide mapping g_m.
SEQUENCES: dict[str, tuple[float, float]] = {"T1": (500.0, 12.0), "T2": (4000.0, 100.0), "PD": (3000.0, 15.0),
                                             "FLAIR": (9000.0, 120.0)}

#: Tissue prototypes (T1 ms, T2 ms, PD) of classes 1..3.
_PROTOTYPES = {1: (3800.0, 1500.0, 1.0), 2: (1300.0, 95.0, 0.82), 3: (780.0, 75.0, 0.70)}


@dataclasses.dataclass(frozen=True)
class SubjectConfig:
    """How subjects are drawn. Jitter = std of the log of each tissue property around its class prototype."""

    class_probs: tuple[float, float, float, float] = (0.25, 0.15, 0.3, 0.3)   # other, CSF, GM, WM per engine label
    jitter: float = 0.15
    air_background: float = 0.7       # probability that engine label 0 is air (signal 0) rather than tissue
    p_brain: float = 0.8              # probability of a brain-like layered subject (CSF / GM ribbon / WM core)


def _tissue_table(rng: np.random.Generator, n_labels: int, cfg: SubjectConfig, layer_labels: list[int]
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Per engine label: class (n,) int and properties (n, 3) = (T1, T2, PD). `layer_labels` (outermost band
    first) fixes the classes of a layered subject's bands; its other labels are "other" tissue."""
    classes = rng.choice(4, size=n_labels, p=np.asarray(cfg.class_probs))
    if layer_labels:
        classes[:] = 0
        bands = [1, 2] + [int(rng.choice([2, 3]))] * (len(layer_labels) - 3) + [3]   # CSF, GM, (GM|WM), WM
        for value, cls in zip(layer_labels, bands):
            if value >= 0:
                classes[value] = cls
    props = np.zeros((n_labels, 3))
    for i, c in enumerate(classes):
        if c == 0:  # "other" tissue (fat, muscle, bone marrow...): anywhere in a broad range
            props[i] = (np.exp(rng.uniform(np.log(250), np.log(2500))), np.exp(rng.uniform(np.log(30), np.log(300))),
                        rng.uniform(0.3, 1.0))
        else:
            t1, t2, pd = _PROTOTYPES[int(c)]
            j = np.exp(rng.normal(0.0, cfg.jitter, size=3))
            props[i] = (t1 * j[0], t2 * j[1], min(1.0, pd * j[2]))
    if rng.random() < cfg.air_background:
        classes[0], props[0] = 0, (1000.0, 50.0, 0.0)
    return classes, props


def signal(props: np.ndarray, modality: str) -> np.ndarray:
    """Spin-echo signal of tissues `(n, 3)` (T1 ms, T2 ms, PD) under modality `modality`'s fixed (TR, TE)."""
    tr, te = SEQUENCES[modality]
    t1, t2, pd = props[:, 0], props[:, 1], props[:, 2]
    return pd * (1.0 - np.exp(-tr / t1)) * np.exp(-te / t2)


def engine_config(shape: tuple[int, int, int], brain: bool = False) -> EngineConfig:
    """The data-engine configuration used for subjects (foreground mask, moderate shape count; `brain`: a layered
    phantom with 3-4 bands, cavities and nuclei)."""
    layered = dict(p_foreground_mask=1.0, p_layered=1.0, layer_count=(3, 4), layer_width=(0.1, 0.25), p_envelope=0.3,
                   layer_cavities=(1, 3), mask_radius=(0.7, 0.95)) if brain else dict(p_foreground_mask=0.9)
    return EngineConfig(shape=tuple(shape), n_views=1,
                        labels=LabelConfig(min_shapes=8, max_shapes=24, **layered),
                        appearance=AppearanceConfig(mode_probs=(1.0, 0.0, 0.0), p_gamma=0.0, p_lowres=0.2,
                                                    noise_std=(0.0, 0.04), bias_std=(0.0, 0.2)))


def sample_subject(seed: int, shape: tuple[int, int, int], modalities: tuple[str, ...],
                   cfg: SubjectConfig | None = None, device: torch.device | str = "cpu"
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Render subject `seed`: images `(M, I, J, K)` float32 in [0, 1] (modality order as given) and the tissue
    class map `(I, J, K)` int64 (see module docstring). Deterministic given the seed."""
    unknown = [m for m in modalities if m not in SEQUENCES]
    if unknown:
        raise ValueError(f"no synthetic sequence for modalities {unknown}; known: {sorted(SEQUENCES)}")
    cfg = cfg or SubjectConfig()
    rng = np.random.default_rng(int(seed))
    ecfg = engine_config(shape, brain=bool(rng.random() < cfg.p_brain))
    label_params = sample_label_params(ecfg.labels, rng, ecfg.shape)
    labels, layer_labels = render_labels_with_layers(label_params, device)
    n_labels = int(labels.max()) + 1
    classes, props = _tissue_table(rng, n_labels, cfg, layer_labels)
    images = []
    for modality in modalities:
        appearance = sample_appearance_params(ecfg.appearance, rng, n_labels)
        s = signal(props, modality)
        appearance.means = s / max(float(s.max()), 1e-6)
        appearance.stds = appearance.stds * 0.5
        images.append(render_appearance(labels, appearance, device))
    class_map = torch.as_tensor(classes, device=labels.device)[labels]
    return torch.stack(images), class_map


def sample_batch(seeds: list[int], shape: tuple[int, int, int], modalities: tuple[str, ...],
                 cfg: SubjectConfig | None = None, device: torch.device | str = "cpu"
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack subjects: images `(B, M, I, J, K)`, classes `(B, I, J, K)`."""
    out = [sample_subject(s, shape, modalities, cfg, device) for s in seeds]
    return torch.stack([o[0] for o in out]), torch.stack([o[1] for o in out])
