"""Encoder network and loss: shapes, levels, BatchNorm folding, loss behaviour. Tiny inputs, CPU."""

from __future__ import annotations

import pytest
import torch

from multimodalgen.encoder.inference import fold_batchnorm
from multimodalgen.encoder.loss import (balanced_indices, downsample_labels, make_heads,
                                        multilevel_contrastive_loss, neighbour_indices, supcon_loss)
from multimodalgen.encoder.network import UNet3D, UNetConfig, count_parameters

SMALL = UNetConfig(widths=(4, 8, 8, 16, 16))


def test_output_shape_and_levels():
    model = UNet3D(SMALL).eval()
    x = torch.rand(2, 1, 32, 16, 48)
    with torch.no_grad():
        out, levels = model(x, return_levels=True)
    assert out.shape == (2, 16, 32, 16, 48)
    assert [lv.shape[1] for lv in levels] == model.level_channels()
    assert levels[-1] is out
    assert [lv.shape[2] for lv in levels] == [4, 8, 16, 32]


def test_rejects_sizes_not_multiple_of_divisor():
    with pytest.raises(ValueError, match="multiple of 16"):
        UNet3D(SMALL)(torch.rand(1, 1, 20, 16, 16))


def test_default_size_is_small():
    n = count_parameters(UNet3D(UNetConfig(widths=(8, 16, 32, 64, 128))))
    assert 0.5e6 < n < 3e6  # fp16 < 6 MB, far below the 25 MB budget


def test_fold_batchnorm_matches_eval_model():
    torch.manual_seed(0)
    model = UNet3D(SMALL)
    model.train()
    with torch.no_grad():  # give BatchNorm non-trivial running statistics
        for _ in range(3):
            model(torch.rand(2, 1, 16, 16, 16) * 3 + 1)
    model.eval()
    x = torch.rand(1, 1, 16, 32, 16)
    with torch.no_grad():
        ref = model(x)
        out = fold_batchnorm(model)(x)
    assert torch.allclose(ref, out, atol=1e-4, rtol=1e-4)


def test_config_roundtrip_and_validation():
    assert UNetConfig.from_dict(SMALL.to_dict()) == SMALL
    with pytest.raises(ValueError):
        UNetConfig(widths=(4, 8))
    with pytest.raises(ValueError):
        UNetConfig(padding_mode="circular")


def test_balanced_indices_balances_labels():
    gen = torch.Generator().manual_seed(0)
    lab = torch.zeros(16, 16, 16, dtype=torch.int64)
    lab[:2] = 1          # 512 voxels
    lab[5, 5, 5] = 2     # 1 voxel
    idx = balanced_indices(lab, 30, gen)
    counts = torch.bincount(lab.reshape(-1)[idx], minlength=3)
    assert counts.tolist() == [10, 10, 1]
    assert len(torch.unique(idx)) == len(idx)


def test_downsample_labels_and_neighbours():
    lab = torch.arange(8 * 8 * 8).reshape(1, 1, 8, 8, 8)
    small = downsample_labels(lab, (4, 4, 4))
    assert small.shape == (1, 1, 4, 4, 4) and int(small[0, 0, 0, 0, 0]) == lab[0, 0, 1, 1, 1]
    gen = torch.Generator().manual_seed(0)
    idx = torch.tensor([0, 300, 511])
    nb = neighbour_indices(idx, (8, 8, 8), 2, 3, gen)
    a = torch.stack(torch.unravel_index(idx, (8, 8, 8)), 1)
    b = torch.stack(torch.unravel_index(nb, (8, 8, 8)), 1)
    assert ((a - b).abs().max(1).values >= 1).all()


def test_supcon_prefers_label_clusters():
    y = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2])
    centers = torch.eye(3)[y]
    good = supcon_loss(torch.nn.functional.normalize(centers + 0.01 * torch.randn(9, 3), dim=1), y, 0.33)
    bad = supcon_loss(torch.nn.functional.normalize(torch.randn(9, 3), dim=1), y, 0.33)
    assert float(good) < float(bad)


def test_multilevel_loss_finite_with_identity_term():
    torch.manual_seed(0)
    model = UNet3D(SMALL)
    heads = make_heads(model.level_channels(), 16)
    x = torch.rand(2, 1, 16, 16, 16)
    lab = torch.randint(0, 3, (1, 1, 16, 16, 16)).repeat(1, 2, 1, 1, 1)
    _, levels = model(x, return_levels=True)
    gen = torch.Generator().manual_seed(0)
    loss, per_level = multilevel_contrastive_loss(levels, lab, heads, 32, 0.33, gen, identity_weight=0.5)
    assert torch.isfinite(loss) and len(per_level) == 4
    loss.backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
