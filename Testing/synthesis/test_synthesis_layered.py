"""Layered brain-like phantoms (synth-1.1; head shells synth-1.2): determinism, band structure, anatomical
roles, and that p_layered = 0 draws exactly what synth-1.0 drew."""

from __future__ import annotations

import numpy as np
import torch

from multimodalgen.synthesis.config import EngineConfig, LabelConfig
from multimodalgen.synthesis.labels import (ROLE_NAMES, label_roles, render_labels, render_labels_with_layers,
                                            sample_label_params)
from multimodalgen.synthesis.views import generate_batch

LAYERED = LabelConfig(p_layered=1.0, p_foreground_mask=1.0, mask_radius=(0.7, 0.9), layer_count=(3, 3),
                      layer_fold=(0.02, 0.04), layer_width=(0.15, 0.2), layer_cavities=(1, 1), layer_nuclei=(0, 0),
                      p_envelope=0.0)


def _params(cfg: LabelConfig, seed: int, shape=(32, 32, 32)):
    return sample_label_params(cfg, np.random.default_rng(seed), shape)


def test_layered_is_deterministic_and_reports_band_labels():
    a, bands_a = render_labels_with_layers(_params(LAYERED, 7))
    b, bands_b = render_labels_with_layers(_params(LAYERED, 7))
    assert torch.equal(a, b) and bands_a == bands_b
    assert len(bands_a) == 3 and all(0 <= v <= int(a.max()) for v in bands_a)
    assert len(set(bands_a)) == 3


def test_bands_are_nested_outer_to_core():
    """Mean distance to the volume centre decreases from the outer band to the core."""
    labels, bands = render_labels_with_layers(_params(LAYERED, 3))
    grid = torch.stack(torch.meshgrid(*[torch.arange(32.0)] * 3, indexing="ij"), -1)
    centre = grid[labels == bands[-1]].mean(0)
    radius = [float((grid[labels == v] - centre).norm(dim=-1).median()) for v in bands]
    assert radius[0] > radius[1] > radius[2], radius


def test_roles_follow_bands_and_views():
    labels, bands = render_labels_with_layers(_params(LAYERED, 5))
    roles = label_roles(bands, int(labels.max()) + 1)
    assert roles.tolist().count(-1) == int(labels.max()) + 1 - 3
    assert [int(roles[v]) for v in bands] == [0, 1, 2] and len(ROLE_NAMES) == 3
    cfg = EngineConfig(shape=(32, 32, 32), labels=LAYERED, p_view_deform=0.0)
    images, lab, role_maps = generate_batch(cfg, [11], with_roles=True)
    assert role_maps.shape == lab.shape and set(torch.unique(role_maps).tolist()) <= {-1, 0, 1, 2}
    assert torch.equal(role_maps[0, 0], role_maps[0, 1])  # the same anatomy in both views
    assert {0, 1, 2} <= set(torch.unique(role_maps).tolist())


def test_non_layered_sample_has_no_roles_and_p0_draws_like_before():
    plain = LabelConfig()
    rng_a, rng_b = np.random.default_rng(4), np.random.default_rng(4)
    pa = sample_label_params(plain, rng_a, (32, 32, 32))
    pb = sample_label_params(LabelConfig(p_layered=0.0), rng_b, (32, 32, 32))
    assert pa.layer_bounds is None and rng_a.random() == rng_b.random()  # same number of draws
    labels, bands = render_labels_with_layers(pa)
    assert bands == [] and torch.equal(labels, render_labels(pb))
    assert bool((label_roles(bands, int(labels.max()) + 1) == -1).all())


def test_layer_config_validation():
    import pytest

    with pytest.raises(ValueError):
        LabelConfig(layer_count=(1, 3))
    with pytest.raises(ValueError):
        LabelConfig(p_layered=1.5)


def test_head_shells_surround_the_bands_and_carry_no_role():
    """synth-1.2: with p_head = 1 two more labels (skull, then scalp) lie between the outer band and the mask's edge."""
    cfg = LabelConfig(**{**LAYERED.__dict__, "p_head": 1.0, "head_brain_fraction": (0.75, 0.75)})
    params = _params(cfg, 5)
    assert params.head_bounds is not None and params.head_bounds[0] == 0.75 < params.head_bounds[1] < 1.0
    labels, bands = render_labels_with_layers(params)
    again, _ = render_labels_with_layers(_params(cfg, 5))
    assert torch.equal(labels, again)
    grid = torch.stack(torch.meshgrid(*[torch.arange(32.0)] * 3, indexing="ij"), -1)
    centre = grid[labels == bands[-1]].mean(0)
    shells = sorted(set(torch.unique(labels).tolist()) - set(bands) - {0})
    assert len(shells) >= 2
    radius = {v: float((grid[labels == v] - centre).norm(dim=-1).median()) for v in shells + bands}
    skull, scalp = shells[-2], shells[-1]                       # rendered last: the two largest label values
    assert radius[scalp] > radius[skull] > radius[bands[0]], radius
    roles = label_roles(bands, int(labels.max()) + 1)
    assert roles[skull] == -1 and roles[scalp] == -1


def test_p_head_zero_draws_exactly_what_synth_1_1_drew():
    """p_head = 0 draws nothing more, so every layered phantom is unchanged (the synth-1.1 renders)."""
    with_field = LabelConfig(**{**LAYERED.__dict__, "p_head": 0.0, "head_brain_fraction": (0.5, 0.6)})
    for seed in range(3):
        a, bands_a = render_labels_with_layers(_params(LAYERED, seed))
        b, bands_b = render_labels_with_layers(_params(with_field, seed))
        assert torch.equal(a, b) and bands_a == bands_b
