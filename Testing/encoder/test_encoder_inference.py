"""Sliding-window feature extraction: shape/grid, equality with whole-volume inference, Volume wrapper, CLI."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from multimodalgen.encoder.inference import extract_features, features_for_volume, fold_batchnorm
from multimodalgen.encoder.network import UNet3D, UNetConfig

SMALL = UNetConfig(widths=(4, 8, 8, 16, 16))


def _model() -> UNet3D:
    torch.manual_seed(0)
    model = UNet3D(SMALL)
    model.train()
    with torch.no_grad():
        for _ in range(2):
            model(torch.rand(2, 1, 16, 16, 16))
    return model.eval()


def _image(shape=(40, 36, 28)) -> np.ndarray:
    rng = np.random.default_rng(0)
    grid = np.stack(np.meshgrid(*[np.linspace(0, 1, n) for n in shape], indexing="ij"))
    img = 0.5 + 0.3 * np.sin(6 * grid[0]) * np.cos(5 * grid[1]) + 0.2 * grid[2]
    return (img + 0.02 * rng.standard_normal(shape)).astype(np.float32)


def test_shape_dtype_and_any_size():
    feats = extract_features(_image((21, 17, 9)), _model(), patch=64)
    assert feats.shape == (16, 21, 17, 9) and feats.dtype == np.float32
    assert np.isfinite(feats).all()


def test_sliding_window_matches_whole_volume():
    model = _model()
    img = _image()
    whole = extract_features(img, model, patch=64)            # one window covers everything
    tiled = extract_features(img, model, patch=32, overlap=0.5)  # 8+ windows, blended
    assert tiled.shape == whole.shape
    # the window interiors see the same context; only blended seams differ a little
    rel = np.abs(tiled - whole).mean() / np.abs(whole).mean()
    corr = np.corrcoef(tiled.ravel(), whole.ravel())[0, 1]
    assert rel < 0.15 and corr > 0.97, (rel, corr)


def test_folded_model_gives_same_features():
    model = _model()
    img = _image((16, 16, 16))
    a = extract_features(img, model, patch=16)
    b = extract_features(img, fold_batchnorm(model), patch=16)
    assert np.allclose(a, b, atol=1e-4)


def test_bad_arguments():
    with pytest.raises(ValueError):
        extract_features(np.zeros((4, 4), np.float32), _model())
    with pytest.raises(ValueError):
        extract_features(np.zeros((8, 8, 8), np.float32), _model(), overlap=0.95)


def test_features_for_volume_keeps_grid():
    from multimodalgen.volume import Volume

    affine = np.diag([1.5, 2.0, 2.5, 1.0])
    affine[:3, 3] = (10.0, -5.0, 3.0)
    vol = Volume(_image((20, 18, 10)) * 800.0, affine, "T2")
    out = features_for_volume(vol, _model(), patch=32)
    assert out.array.shape == (16, 20, 18, 10)
    assert np.allclose(out.affine, affine) and out.modality == "FEATURES"
    # intensity scaling does not matter: normalisation happens inside
    out2 = features_for_volume(Volume(vol.array / 800.0, affine, "T2"), _model(), patch=32)
    assert np.allclose(out.array, out2.array, atol=1e-4)
