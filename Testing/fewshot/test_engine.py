"""Engine and Volume-level API: accuracy on a tiny case, exact painted slices, determinism, several labels, grids."""

from __future__ import annotations

import numpy as np
import pytest

from fewshot_helpers import dice, paint
from multimodalgen.errors import UserInputError
from multimodalgen.fewshot import segment_from_slices
from multimodalgen.volume import Volume, same_grid


def _run(case, config, slices=(3, 6, 8), seed=0, **kwargs):
    image, truth = case
    painting = truth.with_array(paint(truth.array, slices))
    return segment_from_slices([image], painting, config=config, seed=seed, **kwargs), painting


def test_recovers_the_structures_and_keeps_the_painting_exactly(case, fast_config):
    image, truth = case
    result, painting = _run(case, fast_config)
    assert same_grid(result, image) and result.array.dtype == np.uint8
    for s in (3, 6, 8):  # annotated slices equal the painting, voxel for voxel
        np.testing.assert_array_equal(result.array[:, :, s], painting.array[:, :, s])
    unpainted = np.ones(truth.shape3d[2], bool)
    unpainted[[3, 6, 8]] = False
    for label in (1, 2):
        d = dice(result.array[:, :, unpainted] == label, truth.array[:, :, unpainted] == label)
        assert d > 0.75, (label, d)
    report = result.metadata["fewshot"]
    assert report["labels"] == [1, 2] and report["axes"][0]["slices"] == [3, 6, 8]


def test_segment_names_of_the_painting_are_kept(case, fast_config):
    image, truth = case
    painting = Volume(paint(truth.array, (3, 6, 8)), truth.affine, "LABEL",
                      {"segments": [{"label": 1, "name": "tumour", "color": [1.0, 0.0, 0.0]}]})
    result = segment_from_slices([image], painting, config=fast_config)
    names = {s["label"]: s["name"] for s in result.metadata["segments"]}
    assert names == {1: "tumour", 2: "label 2"}


def test_one_painted_slice_extrapolates(case, fast_config):
    image, truth = case
    result, _ = _run(case, fast_config, slices=(5,))
    rest = [s for s in range(truth.shape3d[2]) if s != 5]
    assert dice(result.array[:, :, rest] == 1, truth.array[:, :, rest] == 1) > 0.6


def test_same_seed_same_result_and_seed_matters(case, fast_config):
    a, _ = _run(case, fast_config, seed=3)
    b, _ = _run(case, fast_config, seed=3)
    np.testing.assert_array_equal(a.array, b.array)
    assert a.metadata["fewshot"]["training"]["loss"] == b.metadata["fewshot"]["training"]["loss"]
    c, _ = _run(case, fast_config, seed=4)
    assert c.metadata["fewshot"]["training"]["loss"] != a.metadata["fewshot"]["training"]["loss"]


def test_prior_only_and_head_only_modes(case, fast_config):
    import dataclasses

    image, truth = case
    for kwargs in ({"use_head": False}, {"use_prior": False}):
        result, painting = _run(case, dataclasses.replace(fast_config, **kwargs))
        np.testing.assert_array_equal(result.array[:, :, 6], painting.array[:, :, 6])
        assert dice(result.array == 1, truth.array == 1) > 0.6
    with pytest.raises(UserInputError, match="nothing to segment"):
        dataclasses.replace(fast_config, use_head=False, use_prior=False)


def test_painting_on_another_grid_is_refused_or_resampled_explicitly(case, fast_config):
    image, truth = case
    shifted = truth.affine.copy()
    shifted[:3, 3] += 0.4
    painting = Volume(paint(truth.array, (2, 5, 9)), shifted, "LABEL")
    with pytest.raises(UserInputError, match="another grid"):
        segment_from_slices([image], painting, config=fast_config)
    result = segment_from_slices([image], painting, config=fast_config, resample=True)
    assert any("resampled" in n for n in result.metadata["fewshot"]["notes"])
    assert same_grid(result, image)


def test_channels_on_different_grids(case, fast_config):
    image, truth = case
    other = Volume(image.array[:-2], image.affine, "T2")
    painting = truth.with_array(paint(truth.array, (2, 5, 9)))
    with pytest.raises(UserInputError, match="channel 2 is on another grid"):
        segment_from_slices([image, other], painting, config=fast_config)
    result = segment_from_slices([image, other], painting, config=fast_config, resample=True)
    assert any("channel 2 was resampled" in n for n in result.metadata["fewshot"]["notes"])


def test_two_channels_and_bad_images(case, fast_config):
    image, truth = case
    t2 = image.with_array(image.array.max() - image.array, modality="T2")
    painting = truth.with_array(paint(truth.array, (2, 5, 9)))
    result = segment_from_slices([image, t2], painting, config=fast_config)
    assert result.metadata["fewshot"]["n_features"] == 2 * 9
    with pytest.raises(UserInputError, match="constant"):
        segment_from_slices([image.with_array(np.zeros(image.shape3d, np.float32))], painting, config=fast_config)
    with pytest.raises(UserInputError, match="no image"):
        segment_from_slices([], painting, config=fast_config)


def test_array_level_api_matches_volume_level(case, fast_config):
    from multimodalgen.fewshot import segment_arrays

    image, truth = case
    painting = paint(truth.array, (3, 6, 8))
    labels = segment_arrays(image.array, painting, image.affine, modalities=["T1"], config=fast_config, seed=2)
    volume = segment_from_slices([image], truth.with_array(painting), config=fast_config, seed=2)
    np.testing.assert_array_equal(labels, volume.array)
    with pytest.raises(UserInputError, match="does not match"):
        segment_arrays(image.array, painting[:-1], image.affine, config=fast_config)
