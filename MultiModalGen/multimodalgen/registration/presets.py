"""Presets `fast` and `accurate`: typed stage configurations chosen once and reported."""

from __future__ import annotations

import dataclasses

from multimodalgen.errors import UserInputError
from multimodalgen.registration.contract import PRESETS
from multimodalgen.registration.convexadam import ConvexAdamConfig
from multimodalgen.registration.linear import LinearConfig


@dataclasses.dataclass
class RegistrationConfig:
    """Everything a run uses besides its inputs."""

    spacing_mm: float = 2.0
    linear: LinearConfig = dataclasses.field(default_factory=LinearConfig)
    linear_rounds: int = 1  # 4 mm refinement rounds on features of the resampled moving image
    linear_refine: LinearConfig = dataclasses.field(
        default_factory=lambda: LinearConfig(levels=((1, 0, 40),), lr_translation_mm=0.5, lr_rotation_rad=0.01,
                                             lr_matrix=0.005))
    linear_fine: LinearConfig = dataclasses.field(  # working-resolution rounds (one when deformable follows)
        default_factory=lambda: LinearConfig(levels=((1, 0, 30),), lr_translation_mm=0.5, lr_rotation_rad=0.01,
                                             lr_matrix=0.005))
    linear_fine_rounds: int = 2
    # working-resolution rounds when a deformable stage follows: one (its diffusion regulariser penalises a
    # residual affine error). Tried 2026-12-03: none in `fast` left the dev cases within noise (mean TRE 2.094 ->
    # 2.068 mm, Dice .842 -> .841) but the small phantom of the tests off by 1.29 mm (affine + deformable).
    linear_fine_rounds_deformable: int = 1
    # mutual-information check of the linear stage (`mi_check.py`): an MI linear stage at 4 mm replaces the
    # MIND result when that is far from MI's optimum (a smooth PET-like image vs a T1), and a deformable result
    # that lowers MI is dropped. 2500 points, 20 + 20 iterations: on the PET-like stand-in the same affine TRE as
    # 5000 points, 30 + 30 (3.38 vs 3.48 mm) in 0.24 instead of 0.55 s (one loaded core, 2026-12-03).
    mi_check: bool = True
    linear_mi: LinearConfig = dataclasses.field(
        default_factory=lambda: LinearConfig(levels=((1, 20, 20),), similarity="mi", max_points=2_500))
    deformable: ConvexAdamConfig = dataclasses.field(default_factory=ConvexAdamConfig)
    # "mind", "mind+encoder" or "auto" (encoder when shipped). MIND alone by default: on the 4 dev cases
    # (2026-11-26) adding encoder-v2 at weight 0.1 / 0.3 moved mean TRE 2.093 -> 2.073 / 2.102 mm and Dice
    # .842 -> .844 / .849, within case-to-case noise, and added ~6 s per case (benchmarks/registration/README.md);
    # 2026-12-04, encoder-v4 (any channel group): Dice .843-.845, TRE 2.047-2.066 mm vs 2.059, CT -> MR head
    # Dice .9780 vs .9784, time x1.8 (results/encoder_features_2026-12-04.md).
    features: str = "mind"
    # the encoder of "mind+encoder": NAME[:GROUP] (`encoder.channels`; None = the default encoder, all channels).
    # A grown encoder's correspondence channels are the ones made for matching (encoder-v4:correspondence).
    encoder: str | None = None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def preset_config(preset: str, *, diffeomorphic: bool | None = None, inverse_consistent: bool | None = None,
                  features: str | None = None, encoder: str | None = None) -> RegistrationConfig:
    """The configuration of a preset, with optional overrides of the deformable options and of the features
    (`features` "mind" | "mind+encoder" | "auto"; `encoder` NAME[:GROUP], see `encoder.channels`)."""
    from multimodalgen.registration.features import FEATURE_KINDS

    if features is not None and features not in FEATURE_KINDS:
        raise UserInputError("unknown registration features", expected=" | ".join(FEATURE_KINDS), got=repr(features),
                             fix="use --features mind (default) or mind+encoder")
    if encoder and (features or "mind") == "mind":
        raise UserInputError("an encoder was given but the features are MIND alone", got=f"encoder {encoder!r}",
                             fix="add --features mind+encoder, or leave --encoder out")
    if preset not in PRESETS:
        raise UserInputError("unknown preset", expected=" | ".join(PRESETS), got=repr(preset))
    if preset == "fast":
        cfg = RegistrationConfig(
            linear=LinearConfig(levels=((1, 20, 25),)),
            deformable=ConvexAdamConfig(cell=2, search=2, step=2, adam_factor=2, adam_iterations=20))
        cfg.linear_refine.levels = ((1, 0, 20),)
        cfg.linear_fine.levels = ((1, 0, 15),)
        # 2500 instead of 5000 sample points per linear iteration (each costs ~ its points): on the 4 dev cases
        # (2026-12-03) mean TRE 2.094 -> 2.059 mm, Dice .8423 -> .8418, ~0.2 s less per case
        for linear in (cfg.linear, cfg.linear_refine, cfg.linear_fine):
            linear.max_points = 2_500
    else:
        cfg = RegistrationConfig(
            linear=LinearConfig(levels=((1, 60, 60),)), linear_rounds=2, linear_fine_rounds=3,
            deformable=ConvexAdamConfig(cell=2, search=4, step=1, adam_factor=2, adam_iterations=60,
                                        inverse_consistent=True))
    if diffeomorphic is not None:
        cfg.deformable.diffeomorphic = bool(diffeomorphic)
    if inverse_consistent is not None:
        cfg.deformable.inverse_consistent = bool(inverse_consistent)
    if features is not None:
        cfg.features = features
    if encoder:
        from multimodalgen.encoder.channels import parse_encoder_spec

        parse_encoder_spec(encoder)             # an unknown group fails here, before any work
        cfg.encoder = encoder
    return cfg
