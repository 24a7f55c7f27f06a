"""MIND-SSC descriptor: shape, range, invariance to intensity scaling/offset, reference implementation."""

from __future__ import annotations

import numpy as np
import pytest


def _reference(img, radius=1, dilation=2):
    """Conv-based MIND-SSC as in the ConvexAdam reference code (for comparison)."""
    import torch
    import torch.nn.functional as F

    six = torch.tensor([[0, 1, 1], [1, 1, 0], [1, 0, 1], [1, 1, 2], [2, 1, 1], [1, 2, 1]]).long()
    dist = ((six[:, None, :] - six[None, :, :]) ** 2).sum(-1)
    x, y = torch.meshgrid(torch.arange(6), torch.arange(6), indexing="ij")
    mask = (x > y).reshape(-1) & (dist == 2).reshape(-1)
    i1 = six.unsqueeze(1).repeat(1, 6, 1).view(-1, 3)[mask, :]
    i2 = six.unsqueeze(0).repeat(6, 1, 1).view(-1, 3)[mask, :]
    m1 = torch.zeros(12, 1, 3, 3, 3)
    m1.view(-1)[torch.arange(12) * 27 + i1[:, 0] * 9 + i1[:, 1] * 3 + i1[:, 2]] = 1
    m2 = torch.zeros(12, 1, 3, 3, 3)
    m2.view(-1)[torch.arange(12) * 27 + i2[:, 0] * 9 + i2[:, 1] * 3 + i2[:, 2]] = 1
    pad1, pad2 = torch.nn.ReplicationPad3d(dilation), torch.nn.ReplicationPad3d(radius)
    diff = F.conv3d(pad1(img), m1, dilation=dilation) - F.conv3d(pad1(img), m2, dilation=dilation)
    ssd = F.avg_pool3d(pad2(diff ** 2), radius * 2 + 1, stride=1)
    mind = ssd - ssd.min(1, keepdim=True)[0]
    var = mind.mean(1, keepdim=True)
    var = torch.clamp(var, var.mean() * 0.001, var.mean() * 1000)
    return torch.exp(-mind / var)[:, torch.tensor([6, 8, 1, 11, 2, 10, 0, 7, 9, 4, 5, 3]).long()]


def test_mind_matches_reference_and_is_intensity_invariant():
    import torch

    from multimodalgen.features.mind import mind_ssc

    rng = np.random.default_rng(0)
    img = rng.random((14, 16, 12)).astype(np.float32)
    out = mind_ssc(img)
    assert out.shape == (12, 14, 16, 12) and out.dtype == np.float32
    assert out.min() > 0 and out.max() <= 1.0 + 1e-6
    np.testing.assert_allclose(out, _reference(torch.from_numpy(img)[None, None])[0].numpy(), atol=1e-5)
    np.testing.assert_allclose(mind_ssc(3.0 * img + 7.0), out, atol=1e-4)


def test_box_filter_is_a_centred_mean():
    import torch

    from multimodalgen.features.mind import box_filter

    x = torch.zeros(1, 1, 7, 7, 7)
    x[0, 0, 3, 3, 3] = 27.0
    y = box_filter(x, 3)
    assert float(y[0, 0, 2:5, 2:5, 2:5].min()) == 1.0 and float(y.sum()) == 27.0


def test_encoder_features_join_mind_when_the_encoder_is_shipped():
    """The `mind+encoder` path loads the shipped encoder and appends its 16 unit-RMS channels to MIND's 12."""
    import torch

    from multimodalgen.registration.features import compute_features, load_encoder_if_shipped

    encoder = load_encoder_if_shipped("cpu")
    if encoder is None:
        pytest.skip("no shipped encoder weights")
    image = torch.rand(1, 1, 20, 18, 16)
    feats = compute_features(image, kind="mind+encoder", encoder=encoder)
    assert feats.shape == (1, 28, 20, 18, 16)
    rms = feats[:, 12:].pow(2).mean(dim=(2, 3, 4)).sqrt()
    torch.testing.assert_close(rms, torch.full_like(rms, 0.1), rtol=1e-3, atol=1e-4)
