"""Interactive session (preview, incremental update, warm features) and task files (round trip, reuse)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fewshot_helpers import dice, make_case, paint
from multimodalgen.errors import UserInputError
from multimodalgen.fewshot import FewShotSession, apply_task, load_task, segment_from_slices
from multimodalgen.volume import Volume


def test_incremental_update_continues_the_head(case, fast_config):
    image, truth = case
    session = FewShotSession([image], config=fast_config, seed=1)
    first = session.segment(truth.with_array(paint(truth.array, (3, 8))))
    head_before = [p.detach().clone() for p in session.head.parameters()]
    second = session.segment(truth.with_array(paint(truth.array, (3, 6, 8))))
    r1, r2 = first.metadata["fewshot"], second.metadata["fewshot"]
    assert r1["training"]["continued"] is False and r2["training"]["continued"] is True
    assert r2["training"]["steps"] == fast_config.head.update_steps < r1["training"]["steps"]
    assert any(not np.allclose(a, b.detach()) for a, b in zip(head_before, session.head.parameters()))
    np.testing.assert_array_equal(second.array[:, :, 6], truth.array[:, :, 6])  # the new slice is exact
    assert r2["feature_cache"]["hits"] >= 1  # features were not recomputed
    # a different label set starts over
    third = session.segment(truth.with_array(paint(truth.array, (3, 6), labels=[1])))
    assert third.metadata["fewshot"]["training"]["continued"] is False


def test_preview_is_a_crop_then_full(case, fast_config):
    image, truth = case
    session = FewShotSession([image], config=fast_config)
    painting = truth.with_array(paint(truth.array, (3, 6, 8)))
    preview = session.preview(painting, max_size=16)
    start, stop = preview.metadata["fewshot"]["box"]
    assert all(b - a <= 16 for a, b in zip(start, stop)) and preview.metadata["fewshot"]["preview"]
    outside = np.ones(image.shape3d, bool)
    outside[tuple(slice(a, b) for a, b in zip(start, stop))] = False
    assert not preview.array[outside].any()
    assert preview.metadata["fewshot"]["head_stride"] == 2
    inside = ~outside
    assert dice(preview.array[inside] == 1, truth.array[inside] == 1) > 0.75
    full = session.segment(painting)
    assert full.metadata["fewshot"]["training"]["continued"] is True
    assert dice(full.array == 1, truth.array == 1) > 0.8


def test_task_round_trip_and_reuse(case, fast_config, tmp_path):
    image, truth = case
    session = FewShotSession([image], config=fast_config)
    session.segment(truth.with_array(paint(truth.array, (3, 6, 8))))
    folder = session.save_task(tmp_path / "task")
    config = json.loads((folder / "task_config.json").read_text())
    assert config["labels"] == [1, 2] and config["modalities"] == ["T1"]
    assert (folder / "head.safetensors").stat().st_size < 50_000
    task = load_task(folder)
    x = np.random.default_rng(0).normal(size=(7, task.n_features)).astype(np.float32)
    import torch

    with torch.no_grad():
        np.testing.assert_allclose(task.head(torch.from_numpy(x)).numpy(),
                                   session.head.eval()(torch.from_numpy(x)).numpy(), rtol=1e-5, atol=1e-5)
    # another patient: the structures moved by a few voxels
    image2, truth2, affine2 = make_case(seed=5, shift=(2.0, -1.0, 0.0))
    result = apply_task(task, [Volume(image2, affine2, "T1")])
    assert dice(result.array == 1, truth2 == 1) > 0.7
    # warm start from the task with one painted slice
    warm = segment_from_slices([Volume(image2, affine2, "T1")], Volume(paint(truth2, (6,)), affine2, "LABEL"),
                               task=folder)
    assert warm.metadata["fewshot"]["training"]["continued"] is True
    # damaged weights are detected
    (folder / "head.safetensors").write_bytes(b"broken")
    with pytest.raises(UserInputError, match="damaged"):
        load_task(folder)
    with pytest.raises(UserInputError, match="no few-shot task"):
        load_task(tmp_path / "missing")


def test_save_before_training_is_refused(case, fast_config, tmp_path):
    image, _ = case
    with pytest.raises(UserInputError, match="nothing to save"):
        FewShotSession([image], config=fast_config).save_task(tmp_path / "t")


def test_encoder_features_are_appended_when_an_encoder_is_given(fast_config):
    """The encoder path (16 channels per image channel) with a tiny randomly initialised encoder network."""
    import torch
    from multimodalgen.encoder import network
    from multimodalgen.fewshot.annotations import find_annotations
    from multimodalgen.fewshot.engine import fit_predict
    from multimodalgen.fewshot.features import FeatureConfig, FeatureSource

    torch.manual_seed(0)
    model = network.UNet3D(network.UNetConfig(widths=(4, 8, 8))).eval()
    image, truth, affine = make_case()
    source = FeatureSource(image[None], affine, ["T1"], FeatureConfig(encoder="auto"), encoder_model=model)
    assert source.use_encoder and source.n_features == 9 + 16
    feats = source.features(((2, 2, 1), (20, 18, 9)))
    assert feats.shape == (25, 18, 16, 8) and np.isfinite(feats).all()
    result = fit_predict(source, find_annotations(paint(truth, (3, 6, 8)), affine), fast_config)
    np.testing.assert_array_equal(result.labels[:, :, 6], truth[:, :, 6])
    assert result.report["encoder"] is True


def test_encoder_name_selects_the_shipped_weights_that_are_loaded():
    """FeatureConfig.encoder_name picks which shipped encoder computes the features (not only the default)."""
    import torch
    from multimodalgen.encoder.weights import load_encoder
    from multimodalgen.fewshot.features import FeatureConfig, FeatureSource

    image, _, affine = make_case()
    source = FeatureSource(image[None], affine, ["T1"], FeatureConfig(encoder="on", encoder_name="encoder-v1"))
    source.features(((0, 0, 0), (8, 8, 8)))
    expected = load_encoder("encoder-v1").state_dict()
    loaded = source.encoder_model.state_dict()
    assert all(torch.equal(loaded[k].cpu(), v) for k, v in expected.items())
    assert not torch.equal(load_encoder("encoder-v2").state_dict()["head.weight"], expected["head.weight"])
