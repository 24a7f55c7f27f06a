"""Tiny personalized models and cases for tests (generated, CPU, seconds)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from multimodalgen.encoder.network import UNetConfig
from multimodalgen.personalized.config import PersonalizedConfig

TINY_ENCODER = UNetConfig(in_channels=1, out_channels=6, widths=(4, 6, 8), padding_mode="zeros")


def tiny_config(**kwargs) -> PersonalizedConfig:
    return PersonalizedConfig(encoder=TINY_ENCODER, decoder_width=4, head_width=4, prior_grid=2, **kwargs)


@pytest.fixture
def tiny_model_dir(tmp_path):
    """A saved tiny personalized model folder (random weights)."""
    from multimodalgen.personalized.model import PersonalizedNet
    from multimodalgen.personalized.weights import save_model

    torch.manual_seed(0)
    folder = tmp_path / "tiny-personalized"
    save_model(folder, PersonalizedNet(tiny_config()).eval(), name="tiny-personalized")
    return folder


def write_case(folder, name: str, seed: int, shape=(12, 12, 8), affine=None, modalities=("T1", "T2", "PD")):
    """Three contrasts of one random 3-class label map as NIfTI files; returns {modality: path, 'label': path}."""
    from multimodalgen.io import write_label, write_volume
    from multimodalgen.volume import Volume

    rng = np.random.default_rng(seed)
    affine = np.diag([2.0, 2.0, 2.0, 1.0]) if affine is None else affine
    labels = np.zeros(shape, np.uint8)
    labels[2:9, 2:9, 1:6] = 1
    labels[4:7, 3:8, 2:5] = 2
    labels[5:7, 5:7, 3:5] = 3
    means = {"T1": (0.0, 0.3, 0.6, 0.9), "T2": (0.0, 0.9, 0.5, 0.3), "PD": (0.0, 0.8, 0.7, 0.6)}
    out = {}
    for m in modalities:
        img = np.asarray(means[m])[labels] + 0.05 * rng.standard_normal(shape)
        out[m] = folder / f"{name}_{m}.nii.gz"
        write_volume(Volume(img.astype(np.float32), affine, m), out[m])
    out["label"] = folder / f"{name}_label.nii.gz"
    write_label(Volume(labels, affine, "LABEL"), out["label"])
    return out
