"""`PersonalizedConfig`: architecture of a personalized model (saved as config.json next to its weights)."""

from __future__ import annotations

import dataclasses
from typing import Any

from multimodalgen.encoder.network import UNetConfig

#: Architecture of the foundation encoder (MultiModalGen/Resources/Models/encoder-v1), reused as f_theta.
FOUNDATION_ENCODER = UNetConfig(in_channels=1, out_channels=16, widths=(8, 16, 32, 64, 128), padding_mode="zeros")


@dataclasses.dataclass(frozen=True)
class PersonalizedConfig:
    """Architecture of `PersonalizedNet`.

    Attributes:
        modalities: modality names the model knows, in a fixed order (the order of the `(B, M, ...)` input axis and
            of the Early-Intervention reference priority).
        labels: class names; index = label value (0 = background).
        encoder: the shared per-modality encoder (the foundation encoder's architecture).
        prior: learnable population prior B added to the masked mean (X_h = mean_m z_m + B).
        prior_grid: B is a `(16, g, g, g)` template, trilinearly resized to the volume's grid.
        early_intervention: the first present modality's pooled bottleneck token conditions the other
            modalities' encoders right after the stem (FiLM scale and shift).
        decoder_width, head_width: hidden channels of the modality decoders g_m and the segmentation head.
        encoder_norm: "volume" (default): the encoder's BatchNorm layers keep no running statistics and normalise
            with the statistics of the volume being encoded, in training and at inference alike (instance-norm
            behaviour; inference is whole-volume, so this is deterministic). Each modality thus gets its own
            statistics instead of a running mean over all contrasts, which a missing-modality model needs.
            "running": classic BatchNorm with running statistics (personalized-v1).
        working_spacing: isotropic voxel size in mm the model runs at (0 = the images' own grid). Images are
            resampled to it (linear) before the model and the class probabilities back to the image grid
            (linear), like nnU-Net's target spacing. A model trained on synthetic 32^3 subjects whose anatomy spans
            ~30 voxels sees a whole brain at the same scale at ~4 mm.
        ct_window: Hounsfield window `(low, high)` that maps CT to [0, 1] for this model (None = the package default
            `intensity.CT_WINDOW_HU`). A brain window lets the model see grey/white contrast in CT.
        patch_size: sliding-window inference on the working grid with cubic windows of this many voxels (0 = whole
            volume at once). A model trained on crops sees, window by window, what it was trained on (with
            per-volume normalisation the statistics of a window are those of a training crop).
        refine_prior_power: exponent on the network's probabilities in `segment`'s intensity refinement
            (`personalized.refine`; 0 = the image's intensities only, 1 = the network's posterior as the prior). How
            far to trust the network is a property of the network, so it is chosen per model on the dev benchmark
            (`benchmarks/personalized/refine_select.py`); 0.3 is the value chosen for personalized-v4 and used by
            every model up to personalized-v8.
        refine_init: where that refinement's mixture starts ("both": the network's split and intensity clusters,
            averaged, as every model up to personalized-v8; "clusters"; "network"), chosen with the prior power.
        mirror_lr: average the network's logits with those of the input mirrored left-right (the voxel axis
            closest to world left-right; `personalized.sliding.mirrored_logits`): twice the network time, for
            models trained on left-right flipped subjects.
        csf_shell_mm: after the refinement, skull-labelled voxels within this distance (mm, Euclidean on the image
            grid) of grey or white matter are given to CSF (`personalized.csf_shell`: there is always a CSF layer
            between cortex and inner table); 0 = off, as every model up to personalized-v9. Chosen per model with
            the refinement setting. Not applied with `segment --refine none` (the network's answer as is).
    """

    modalities: tuple[str, ...] = ("T1", "T2", "PD")
    labels: tuple[str, ...] = ("background", "CSF", "GM", "WM")
    encoder: UNetConfig = FOUNDATION_ENCODER
    prior: bool = True
    prior_grid: int = 4
    early_intervention: bool = False
    decoder_width: int = 16
    head_width: int = 16
    encoder_norm: str = "volume"
    working_spacing: float = 0.0
    ct_window: tuple[float, float] | None = None
    patch_size: int = 0
    refine_prior_power: float = 0.3
    refine_init: str = "both"
    mirror_lr: bool = False
    csf_shell_mm: float = 0.0

    def __post_init__(self) -> None:
        if not self.modalities or len(set(self.modalities)) != len(self.modalities):
            raise ValueError(f"modalities must be distinct and non-empty, got {self.modalities!r}")
        if len(self.labels) < 2:
            raise ValueError(f"need >= 2 labels (background + classes), got {self.labels!r}")
        if self.encoder.in_channels != 1:
            raise ValueError("the shared encoder takes one modality at a time (in_channels = 1)")
        if self.encoder_norm not in ("volume", "running"):
            raise ValueError(f"encoder_norm must be 'volume' or 'running', got {self.encoder_norm!r}")
        if self.working_spacing < 0:
            raise ValueError(f"working_spacing must be >= 0 mm, got {self.working_spacing}")
        if self.ct_window is not None and not self.ct_window[0] < self.ct_window[1]:
            raise ValueError(f"ct_window must be (low, high) with low < high, got {self.ct_window}")
        if self.patch_size and self.patch_size % self.encoder.divisor:
            raise ValueError(f"patch_size must be a multiple of {self.encoder.divisor}, got {self.patch_size}")
        if not 0.0 <= self.refine_prior_power <= 1.0:
            raise ValueError(f"refine_prior_power must be in [0, 1], got {self.refine_prior_power}")
        if not 0.0 <= self.csf_shell_mm <= 20.0:
            raise ValueError(f"csf_shell_mm must be in [0, 20] mm, got {self.csf_shell_mm}")
        if self.refine_init not in ("both", "clusters", "network"):
            raise ValueError(f"refine_init must be 'both', 'clusters' or 'network', got {self.refine_init!r}")
        if self.prior_grid < 1 or self.decoder_width < 1 or self.head_width < 1:
            raise ValueError("prior_grid, decoder_width and head_width must be >= 1")

    @property
    def n_classes(self) -> int:
        return len(self.labels)

    @property
    def label_map(self) -> dict[int, str]:
        return dict(enumerate(self.labels))

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["modalities"], d["labels"] = list(self.modalities), list(self.labels)
        d["encoder"] = self.encoder.to_dict()
        d["ct_window"] = None if self.ct_window is None else list(self.ct_window)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "PersonalizedConfig":
        from multimodalgen.config_dict import checked_fields

        data = checked_fields(cls, data, "PersonalizedConfig")
        if "encoder" in data:
            data["encoder"] = UNetConfig.from_dict(data["encoder"])
        data.setdefault("encoder_norm", "running")  # configs written before the field existed (personalized-v1)
        for key in ("modalities", "labels"):
            if key in data:
                data[key] = tuple(data[key])
        if data.get("ct_window") is not None:
            data["ct_window"] = tuple(float(v) for v in data["ct_window"])
        return cls(**data)
