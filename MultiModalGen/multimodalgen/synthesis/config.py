"""Typed, validated configuration of the synthesis engine.

All lengths in the label model are in *normalised coordinates*: the longest axis of the volume spans [-1, 1]
(so 0.1 is 5 % of the longest side). Voxel quantities (blur sigma, shell width) are in voxels of the
rendered grid. Intensities before the final normalisation are in arbitrary units; CT mode works in HU.
"""

from __future__ import annotations

import dataclasses
from typing import Any

#: Bump when sampling or rendering changes what a seed produces (recorded in model cards and checkpoints).
ENGINE_VERSION = "synth-1.2"
# synth-1.1 adds layered brain-like phantoms (LabelConfig.p_layered); with p_layered = 0 every seed renders exactly
# what synth-1.0 rendered (the layered parameters are only drawn when p_layered > 0).
# synth-1.2 adds skull/scalp shells to layered phantoms (LabelConfig.p_head); with p_head = 0 every seed renders
# exactly what synth-1.1 rendered.


def _check_range(name: str, value: tuple[float, float], lo: float | None = None, hi: float | None = None) -> None:
    if len(value) != 2 or value[0] > value[1]:
        raise ValueError(f"{name} must be a (low, high) pair with low <= high, got {value!r}")
    if lo is not None and value[0] < lo:
        raise ValueError(f"{name} must be >= {lo}, got {value!r}")
    if hi is not None and value[1] > hi:
        raise ValueError(f"{name} must be <= {hi}, got {value!r}")


@dataclasses.dataclass(frozen=True)
class LabelConfig:
    """How random label ensembles are sampled (see `synthesis.labels`)."""

    min_shapes: int = 6
    max_shapes: int = 36
    p_partition: float = 0.6          # fill the background with a smooth random partition (2-6 regions) first
    partition_regions: tuple[int, int] = (2, 6)
    radius: tuple[float, float] = (0.06, 0.5)       # ellipsoid semi-axes, normalised units
    exponent: tuple[float, float] = (1.2, 4.0)      # superquadric exponent (2 = ellipsoid)
    roughness: tuple[float, float] = (0.0, 0.35)    # amplitude of smooth noise added to the implicit function
    kind_probs: tuple[float, float, float] = (0.45, 0.35, 0.2)  # superquadric, noise blob, hollow shell
    shell_thickness: tuple[float, float] = (0.06, 0.25)         # relative thickness of hollow shells
    elastic_std: tuple[float, float] = (0.0, 0.06)  # global elastic deformation amplitude (normalised units)
    p_foreground_mask: float = 2.0 / 3.0
    mask_radius: tuple[float, float] = (0.55, 0.9)
    mask_offset: float = 0.2
    p_envelope: float = 0.5           # probability of a shell (skin/skull-like) around the foreground mask
    envelope_width: tuple[int, int] = (1, 3)        # voxels
    p_layered: float = 0.0            # replace the inside of the foreground mask by nested folded layers
    layer_count: tuple[int, int] = (2, 4)           # bands inside the mask (core, ribbon(s), outer fluid)
    layer_width: tuple[float, float] = (0.06, 0.25)  # band widths, in units of the mask's implicit function
    layer_fold: tuple[float, float] = (0.03, 0.15)   # amplitude of the folding noise of each band boundary
    layer_fold_grid: tuple[int, int] = (8, 16)       # coarse grid size of the folding noise (more = finer folds)
    layer_cavities: tuple[int, int] = (0, 3)         # fluid cavities (ventricle-like) carrying the outer label
    layer_nuclei: tuple[int, int] = (0, 3)           # deep blobs carrying the second band's (ribbon) label
    p_head: float = 0.0               # layered phantoms: skull- and scalp-like shells outside the bands (synth-1.2)
    head_brain_fraction: tuple[float, float] = (0.7, 0.9)  # the bands' share of the mask's implicit function

    def __post_init__(self) -> None:
        if not 1 <= self.min_shapes <= self.max_shapes <= 37:
            raise ValueError(f"need 1 <= min_shapes <= max_shapes <= 37, got {self.min_shapes}, {self.max_shapes}")
        for name in ("radius", "exponent", "roughness", "shell_thickness", "elastic_std", "mask_radius"):
            _check_range(name, getattr(self, name), lo=0.0)
        _check_range("layer_width", self.layer_width, lo=0.0)
        _check_range("layer_fold", self.layer_fold, lo=0.0)
        for name in ("layer_count", "layer_fold_grid", "layer_cavities", "layer_nuclei"):
            _check_range(name, getattr(self, name), lo=0)
        if self.layer_count[0] < 2:
            raise ValueError(f"layer_count must start at >= 2 bands, got {self.layer_count}")
        _check_range("head_brain_fraction", self.head_brain_fraction, lo=0.1, hi=0.99)
        for name in ("p_partition", "p_foreground_mask", "p_envelope", "p_layered", "p_head"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1], got {getattr(self, name)}")
        if len(self.kind_probs) != 3 or abs(sum(self.kind_probs) - 1.0) > 1e-6:
            raise ValueError(f"kind_probs must be 3 probabilities summing to 1, got {self.kind_probs}")


@dataclasses.dataclass(frozen=True)
class AppearanceConfig:
    """How a view's appearance is sampled (see `synthesis.appearance`)."""

    mode_probs: tuple[float, float, float] = (0.75, 0.15, 0.1)  # MR-like, CT-like, PET-like
    p_zero_background: float = 0.25
    label_std: tuple[float, float] = (0.01, 0.08)   # within-label std relative to the [0, 1] mean range
    texture_std: tuple[float, float] = (0.0, 0.08)  # multiplicative texture amplitude
    bias_std: tuple[float, float] = (0.0, 0.25)     # log-bias field amplitude
    p_bias: float = 0.9
    gamma_log: tuple[float, float] = (-0.6, 0.6)    # gamma = exp(U[...])
    p_gamma: float = 0.5
    blur_sigma: tuple[float, float] = (0.0, 1.2)    # voxels, per axis
    p_blur: float = 0.5
    lowres_factor: tuple[float, float] = (1.0, 4.0)  # per-axis downsampling factor of a low-res acquisition
    p_lowres: float = 0.33
    noise_std: tuple[float, float] = (0.0, 0.06)    # relative to the [0, 1] range
    p_rician: float = 0.3

    def __post_init__(self) -> None:
        if len(self.mode_probs) != 3 or abs(sum(self.mode_probs) - 1.0) > 1e-6:
            raise ValueError(f"mode_probs must be 3 probabilities summing to 1, got {self.mode_probs}")
        for name in ("label_std", "texture_std", "bias_std", "blur_sigma", "noise_std"):
            _check_range(name, getattr(self, name), lo=0.0)
        _check_range("gamma_log", self.gamma_log)
        _check_range("lowres_factor", self.lowres_factor, lo=1.0)
        for name in ("p_zero_background", "p_bias", "p_gamma", "p_blur", "p_lowres", "p_rician"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1], got {getattr(self, name)}")


@dataclasses.dataclass(frozen=True)
class EngineConfig:
    """Whole-engine configuration: grid size, number of views, label and appearance models."""

    shape: tuple[int, int, int] = (64, 64, 64)
    n_views: int = 2
    p_view_deform: float = 0.3        # small independent deformation of a view's label map
    view_deform_voxels: float = 1.5   # max amplitude (voxels) of that deformation
    labels: LabelConfig = dataclasses.field(default_factory=LabelConfig)
    appearance: AppearanceConfig = dataclasses.field(default_factory=AppearanceConfig)

    def __post_init__(self) -> None:
        if len(self.shape) != 3 or min(self.shape) < 8:
            raise ValueError(f"shape must be 3 sizes >= 8, got {self.shape!r}")
        if self.n_views < 1:
            raise ValueError(f"n_views must be >= 1, got {self.n_views}")
        if not 0.0 <= self.p_view_deform <= 1.0 or self.view_deform_voxels < 0:
            raise ValueError("p_view_deform must be in [0, 1] and view_deform_voxels >= 0")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (tuples become lists)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "EngineConfig":
        """Inverse of `to_dict`; unknown keys raise ValueError."""
        data = dict(data)
        labels = LabelConfig(**_tuples(data.pop("labels", {}), LabelConfig))
        appearance = AppearanceConfig(**_tuples(data.pop("appearance", {}), AppearanceConfig))
        top = _tuples(data, cls)
        return cls(labels=labels, appearance=appearance, **top)


def _tuples(data: dict[str, Any], cls: type) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys: {sorted(unknown)}; known: {sorted(names)}")
    return {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
