"""`segment --atlas`: the tissue atlas reader's checks, its placement by affine registration, the fusion, the
placement check that refuses a misplaced atlas, and the CLI's errors (small generated phantoms, CPU, seconds)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from multimodalgen.errors import UserInputError
from multimodalgen.personalized.atlas import (
    ATLAS_CLASSES,
    MIN_BRAIN_AGREEMENT,
    TissueAtlas,
    brain_agreement,
    check_atlas_labels,
    check_atlas_weight,
    fuse_atlas,
    place_atlas,
    read_tissue_atlas,
)
from multimodalgen.volume import Volume

HEAD_LABELS = ("background", "grey matter", "white matter", "cerebrospinal fluid", "skull", "soft tissue")
SHAPE = (36, 40, 34)
ATLAS_AFFINE = np.array([[2.0, 0, 0, -36], [0, 2.0, 0, -44], [0, 0, 2.0, -30], [0, 0, 0, 1]])


def phantom_labels(shape=SHAPE) -> np.ndarray:
    """A head phantom in ATLAS_CLASSES values: white core, grey shell, CSF rim and an off-centre ventricle, skull,
    soft tissue, background (5) outside; elongated and asymmetric so a registration has one answer."""
    grid = np.stack(np.meshgrid(*[np.arange(s, dtype=np.float32) for s in shape], indexing="ij"))
    centre = np.array([17.0, 20.0, 15.0])[:, None, None, None]
    r = np.sqrt((((grid - centre) / np.array([11.0, 14.0, 10.0])[:, None, None, None]) ** 2).sum(0))
    labels = np.full(shape, 5, np.uint8)
    for upper, value in ((1.45, 4), (1.25, 3), (1.1, 2), (0.95, 0), (0.6, 1)):
        labels[r < upper] = value
    ventricle = np.sqrt(((grid - np.array([20.0, 15.0, 17.0])[:, None, None, None]) ** 2).sum(0)) < 3
    labels[ventricle] = 2
    return labels


def phantom_atlas(source="phantom_tpm.nii.gz") -> TissueAtlas:
    """`phantom_labels` as smooth probabilities `(6, I, J, K)` (one-hot blurred by one voxel) on ATLAS_AFFINE."""
    from scipy.ndimage import gaussian_filter

    labels = phantom_labels()
    maps = np.stack([gaussian_filter((labels == k).astype(np.float32), 1.0) for k in range(6)])
    return TissueAtlas((maps / maps.sum(0)).astype(np.float32), ATLAS_AFFINE.copy(), source)


def write_atlas(path, array, affine=ATLAS_AFFINE):
    import nibabel as nib

    nib.save(nib.Nifti1Image(np.asarray(array), affine), str(path))
    return path


def moved_patient(shift_mm=(8.0, -6.0, 4.0)) -> tuple[Volume, np.ndarray]:
    """The phantom's pseudo-image as a patient scan whose anatomy sits `shift_mm` away in world space: (T1 Volume
    on a grid of its own, the truth in HEAD_LABELS values on that grid)."""
    atlas = phantom_atlas()
    affine = ATLAS_AFFINE.copy()
    affine[:3, 3] += shift_mm
    image = atlas.pseudo_image().array * 800 + np.random.default_rng(0).normal(0, 10, SHAPE).astype(np.float32)
    truth = np.array([HEAD_LABELS.index(ATLAS_CLASSES[k]) for k in range(6)], np.uint8)[phantom_labels()]
    return Volume(image.astype(np.float32), affine, "T1"), truth


def brain_dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * (a & b).sum() / (a.sum() + b.sum()))


def test_reader_takes_a_tpm_shaped_file_and_keeps_class_order(tmp_path):
    atlas = phantom_atlas()
    path = write_atlas(tmp_path / "tpm.nii.gz", np.moveaxis(atlas.maps, 0, -1))
    back = read_tissue_atlas(path)
    assert back.maps.shape == (6, *SHAPE) and np.allclose(back.affine, ATLAS_AFFINE)
    assert np.allclose(back.maps, atlas.maps, atol=1e-6) and back.source == str(path)


@pytest.mark.parametrize("array, message", [
    (np.zeros(SHAPE, np.float32), "not a tissue atlas"),                               # 3D
    (np.zeros((*SHAPE, 5), np.float32), "not a tissue atlas"),                         # 5 classes
    (np.full((*SHAPE, 6), np.nan, np.float32), "NaN"),
    (np.full((*SHAPE, 6), 3.0, np.float32), "not a probability map"),
    (np.zeros((*SHAPE, 6), np.float32), "has no brain"),
])
def test_reader_refuses_what_is_not_a_tissue_atlas(tmp_path, array, message):
    path = write_atlas(tmp_path / "bad.nii.gz", array)
    with pytest.raises(UserInputError, match=message):
        read_tissue_atlas(path)


def test_reader_refuses_a_missing_or_unreadable_file(tmp_path):
    with pytest.raises(UserInputError, match="not found"):
        read_tissue_atlas(tmp_path / "absent.nii")
    (tmp_path / "text.nii").write_text("not an image")
    with pytest.raises(UserInputError, match="cannot read the tissue atlas"):
        read_tissue_atlas(tmp_path / "text.nii")


def test_placement_finds_the_moved_anatomy_that_header_geometry_misses():
    from multimodalgen.resample import resample_like

    patient, truth = moved_patient()
    placed, report = place_atlas(phantom_atlas(), patient, HEAD_LABELS)
    assert placed.shape == (6, *SHAPE) and placed.min() > 0            # the floor: no class impossible
    brain = [HEAD_LABELS.index(n) for n in ("grey matter", "white matter", "cerebrospinal fluid")]
    truth_brain = np.isin(truth, brain)
    registered = brain_dice(placed[brain].sum(0) > 0.5, truth_brain)
    atlas = phantom_atlas()
    by_header = sum(resample_like(Volume(atlas.maps[ATLAS_CLASSES.index(HEAD_LABELS[i])], atlas.affine, "T1"),
                                  patient).array for i in brain) > 0.5
    assert registered > 0.95 > brain_dice(by_header, truth_brain) + 0.1
    assert 0.9 < report["volume_scale"] < 1.1 and report["brain_in_view"] > 0.9


def test_fusion_is_the_normalised_product_and_weight_zero_changes_nothing():
    probs = torch.softmax(torch.randn(6, 4, 5, 3), 0)
    placed = np.random.default_rng(1).random((6, 4, 5, 3)).astype(np.float32) + 1e-3
    fused = fuse_atlas(probs, placed, 2.0)
    expected = probs.numpy() * placed ** 2
    assert np.allclose(fused.numpy(), expected / expected.sum(0), atol=1e-5)
    assert torch.allclose(fuse_atlas(probs, placed, 0.0), probs, atol=1e-6)


def test_labels_without_an_atlas_class_and_bad_weights_are_refused():
    check_atlas_labels(HEAD_LABELS)
    with pytest.raises(UserInputError, match="no class for this model's labels tumour"):
        check_atlas_labels(("background", "tumour"))
    for weight in (-1.0, float("nan"), 100.0, "4"):
        with pytest.raises(UserInputError, match="invalid atlas weight"):
            check_atlas_weight(weight)
    check_atlas_weight(0.0)


def _one_hot_logits(labels: np.ndarray) -> torch.Tensor:
    """`(1, 6, I, J, K)` logits of a network that answers `labels` (HEAD_LABELS values) with 90 % confidence."""
    one_hot = np.stack([(labels == k) for k in range(6)]).astype(np.float32)
    return torch.from_numpy(np.log(0.9 * one_hot + 0.02))[None]


def _segment_with_network_answer(monkeypatch, answer: np.ndarray, atlas: TissueAtlas, patient: Volume):
    """`segment_volumes` with the atlas, the network's probabilities replaced by `answer` (HEAD_LABELS values)."""
    from multimodalgen.personalized import inference
    from multimodalgen.personalized.model import PersonalizedNet
    from pers_helpers import tiny_config

    torch.manual_seed(0)
    net = PersonalizedNet(tiny_config(modalities=("T1", "T2"), labels=HEAD_LABELS)).eval()
    monkeypatch.setattr(inference, "to_image_grid", lambda logits, size, native: _one_hot_logits(answer))
    return inference.segment_volumes({"T1": patient}, model=net, atlas=atlas, atlas_weight=4.0, refine="none")


def test_segment_places_the_atlas_and_reports_it(monkeypatch):
    patient, truth = moved_patient()
    labels = _segment_with_network_answer(monkeypatch, truth, phantom_atlas(), patient)
    report = labels.metadata["atlas"]
    assert report["source"] == "phantom_tpm.nii.gz" and report["weight"] == 4.0
    assert report["brain_agreement"] > 0.95 and report["registration_seconds"] >= 0
    assert brain_dice(np.isin(labels.array, [1, 2, 3]), np.isin(truth, [1, 2, 3])) > 0.95


def test_segment_refuses_an_atlas_that_disagrees_with_the_network(monkeypatch):
    """The atlas lands on the anatomy the image shows, the network finds a brain 12 voxels away (a wrong image, a
    wrong atlas, a failed registration look alike here): refused, no answer."""
    patient, truth = moved_patient()
    elsewhere = np.roll(truth, 12, axis=1)
    placed, _ = place_atlas(phantom_atlas(), patient, HEAD_LABELS)
    assert brain_agreement(_one_hot_logits(elsewhere)[0].softmax(0), placed, HEAD_LABELS) < MIN_BRAIN_AGREEMENT
    with pytest.raises(UserInputError, match="could not be placed on this image"):
        _segment_with_network_answer(monkeypatch, elsewhere, phantom_atlas(), patient)


def test_cli_refuses_bad_atlas_options_with_exit_2_and_writes_nothing(tmp_path, tiny_model_dir, capsys):
    from multimodalgen.cli.main import main
    from multimodalgen.io import write_volume

    patient, _ = moved_patient()
    image = write_volume(patient, tmp_path / "t1.nii.gz")
    not_atlas = write_atlas(tmp_path / "three_d.nii.gz", np.zeros(SHAPE, np.float32))
    good = write_atlas(tmp_path / "tpm.nii.gz", np.moveaxis(phantom_atlas().maps, 0, -1))
    out = tmp_path / "seg.nii.gz"
    base = ["--progress", "none", "segment", "--image", f"T1={image}", "--out", str(out)]
    cases = [(["--atlas-weight", "2"], "an atlas weight without an atlas"),
             (["--atlas", str(not_atlas)], "not a tissue atlas"),
             (["--atlas", str(good), "--atlas-weight", "-1"], "invalid atlas weight"),
             (["--atlas", str(good), "--base-model", str(tiny_model_dir)], "no class for this model's labels")]
    for extra, message in cases:
        assert main(base + extra) == 2
        assert message in capsys.readouterr().err and not out.exists()


def test_weight_zero_turns_the_atlas_off_without_placing_it(monkeypatch):
    from multimodalgen.personalized import atlas as atlas_module

    monkeypatch.setattr(atlas_module, "place_atlas", lambda *a, **k: pytest.fail("the atlas was placed at weight 0"))
    patient, truth = moved_patient()
    from multimodalgen.personalized import inference
    from multimodalgen.personalized.model import PersonalizedNet
    from pers_helpers import tiny_config

    net = PersonalizedNet(tiny_config(modalities=("T1", "T2"), labels=HEAD_LABELS)).eval()
    monkeypatch.setattr(inference, "to_image_grid", lambda logits, size, native: _one_hot_logits(truth))
    labels = inference.segment_volumes({"T1": patient}, model=net, atlas=phantom_atlas(), atlas_weight=0.0,
                                       refine="none")
    assert labels.metadata["atlas"] is None and np.array_equal(labels.array, truth)
