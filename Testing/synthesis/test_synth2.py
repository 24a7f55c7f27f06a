"""synth-2: label sources, individual head anatomy, physics-shaped modalities, multimodal subjects."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from multimodalgen.errors import UserInputError
from synth2_helpers import write_fake_data_folder


@pytest.fixture
def label_folder(tmp_path):
    from multimodalgen.synthesis.label_sources import prepare_label_folder

    data = write_fake_data_folder(tmp_path / "data")
    prepare_label_folder(data, tmp_path / "labels")
    return tmp_path / "labels"


def test_prepare_labels_copies_only_cleared_sources(tmp_path, label_folder):
    record = json.loads((label_folder / "sources.json").read_text())
    assert set(record["files"]) == {"tissue_probabilities.nii.gz", "ct_head_labels.nii.gz"}
    assert record["files"]["tissue_probabilities.nii.gz"]["licence"].startswith("GPL-2")
    from multimodalgen.synthesis.label_sources import read_label_folder

    sources = read_label_folder(label_folder)
    assert sources.tissue.shape == (6, 24, 28, 24)
    assert np.allclose(sources.tissue.sum(0), 1.0, atol=1e-3)
    assert set(np.unique(sources.label_maps["ct_head_labels"][0])) == {0, 1, 2}


def test_label_folder_bad_input(tmp_path):
    import nibabel as nib

    from multimodalgen.synthesis.label_sources import prepare_label_folder, read_label_folder

    with pytest.raises(UserInputError, match="no label maps"):
        prepare_label_folder(tmp_path, tmp_path / "out")            # a folder without any allowed source
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserInputError, match="no label maps"):
        read_label_folder(empty)
    bad = tmp_path / "bad"
    bad.mkdir()
    nib.Nifti1Image(np.random.rand(4, 4, 4).astype(np.float32), np.eye(4)).to_filename(str(bad / "x.nii.gz"))
    with pytest.raises(UserInputError, match="non-integer"):
        read_label_folder(bad)
    (bad / "x.nii.gz").unlink()
    nib.Nifti1Image(np.zeros((4, 4, 4, 2), np.uint8), np.eye(4)).to_filename(str(bad / "y.nii.gz"))
    with pytest.raises(UserInputError, match="not 3D"):
        read_label_folder(bad)
    (bad / "y.nii.gz").unlink()
    nib.Nifti1Image(np.arange(512, dtype=np.int16).reshape(8, 8, 8), np.eye(4)).to_filename(str(bad / "z.nii.gz"))
    with pytest.raises(UserInputError, match="255"):
        read_label_folder(bad)
    (bad / "z.nii.gz").unlink()
    (bad / "corrupt.nii.gz").write_bytes(b"\x1f\x8b not a nifti")
    with pytest.raises(UserInputError, match="cannot read"):
        read_label_folder(bad)
    (bad / "corrupt.nii.gz").unlink()
    nib.Nifti1Image(np.zeros((4, 4, 4), np.uint8), np.eye(4)).to_filename(str(bad / "aal.nii.gz"))
    with pytest.raises(UserInputError, match="must not drive training"):
        read_label_folder(bad)


def test_head_subjects_are_deterministic_individual_and_multimodal(label_folder):
    from multimodalgen.synthesis.label_sources import read_label_folder
    from multimodalgen.synthesis.subjects import HeadSubjectSampler

    sampler = HeadSubjectSampler(read_label_folder(label_folder))
    mods = ("T1", "T2", "PD", "FLAIR", "CT", "PET")
    a = sampler.sample(7, (24, 24, 24), 3.0, mods, p_partial=0.0)
    b = sampler.sample(7, (24, 24, 24), 3.0, mods, p_partial=0.0)
    c = sampler.sample(8, (24, 24, 24), 3.0, mods, p_partial=0.0)
    assert torch.equal(a.classes, b.classes) and all(torch.equal(a.images[m], b.images[m]) for m in mods)
    assert not torch.equal(a.classes, c.classes)                              # another individual
    present = set(torch.unique(a.classes).tolist())
    assert {1, 2} <= present and present <= {0, 1, 2, 3, 4, 5}
    wm, gm = a.classes == 2, a.classes == 1
    # physics: T1 white > grey, T2 grey > white, CT bone brightest, PET grey > white
    assert a.images["T1"][wm].mean() > a.images["T1"][gm].mean()
    assert a.images["T2"][gm].mean() > a.images["T2"][wm].mean()
    assert a.images["PET"][gm].mean() > a.images["PET"][wm].mean()
    if bool((a.classes == 4).any()):
        assert a.images["CT"][a.classes == 4].mean() > a.images["CT"][gm].mean()
    assert abs(float(np.linalg.det(a.affine[:3, :3]))) == pytest.approx(27.0, rel=0.4)


def test_partial_field_of_view_blanks_images_and_labels(label_folder):
    from multimodalgen.synthesis.label_sources import read_label_folder
    from multimodalgen.synthesis.subjects import HeadSubjectSampler

    sampler = HeadSubjectSampler(read_label_folder(label_folder))
    cut = [sampler.sample(s, (16, 16, 16), 3.0, ("T1",), p_partial=1.0) for s in range(3)]
    for sub in cut:
        outside = sub.images["T1"] == 0
        assert bool(outside.any()) and not bool(sub.classes[outside & (sub.classes != 0)].numel() > 0.05 *
                                                  outside.sum())


def test_crop_offset_bounds_where_the_grid_centre_falls(label_folder):
    from multimodalgen.synthesis.label_sources import read_label_folder
    from multimodalgen.synthesis.subjects import HeadSubjectSampler

    sampler = HeadSubjectSampler(read_label_folder(label_folder))

    def centre_distance(seed: int, offset: float) -> np.ndarray:
        affine = sampler.sample(seed, (16, 16, 16), 3.0, ("T1",), p_partial=0.0, max_offset_mm=offset).affine
        return np.abs(affine[:3, :3] @ np.full(3, 7.5) + affine[:3, 3] - sampler.centre)

    assert all(centre_distance(s, 0.0).max() < 1e-3 for s in range(3))        # centred on the brain
    far = np.stack([centre_distance(s, 60.0) for s in range(8)])
    assert far.max() <= 60.0 + 1e-3 and far.max() > 25.0                      # wider than the default 25 mm
    from multimodalgen.personalized.train import TrainConfig

    with pytest.raises(ValueError, match="max_offset_mm"):
        TrainConfig(max_offset_mm=-1.0)


def test_training_entry_point_refuses_a_bad_config_in_one_line(tmp_path, capsys):
    from multimodalgen.personalized.train import main

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"max_offset_mm": -5}))
    with pytest.raises(SystemExit) as exit_info:
        main(["--config", str(bad), "--out", str(tmp_path / "run")])
    assert exit_info.value.code == 2 and not (tmp_path / "run").exists()
    err = capsys.readouterr().err
    assert "max_offset_mm must be >= 0" in err and "Traceback" not in err


def test_template_subjects_are_smooth_and_labelled_at_their_resolution(label_folder):
    from multimodalgen.synthesis.label_sources import read_label_folder
    from multimodalgen.synthesis.subjects import HeadSubjectSampler, smoothed_classes

    sampler = HeadSubjectSampler(read_label_folder(label_folder))
    sharp = sampler.sample(3, (24, 24, 24), 3.0, ("T1",), p_partial=0.0, p_template=0.0)
    again = sampler.sample(3, (24, 24, 24), 3.0, ("T1",), p_partial=0.0)
    assert torch.equal(sharp.classes, again.classes)          # p_template = 0 draws nothing: synth-2.0 unchanged
    smooth = sampler.sample(3, (24, 24, 24), 3.0, ("T1",), p_partial=0.0, p_template=1.0)

    def roughness(x):                                         # mean absolute neighbour difference
        return float((x[1:] - x[:-1]).abs().mean() / x.abs().mean())

    assert roughness(smooth.images["T1"]) < 0.8 * roughness(sharp.images["T1"])
    # labels at the image's resolution: fewer class boundaries than the sharp anatomy, same classes
    def boundaries(c):
        return int((c[1:] != c[:-1]).sum())

    assert boundaries(smooth.classes) < boundaries(sharp.classes)
    # a thin ribbon disappears under smoothing; a large block keeps its label
    classes = torch.zeros((20, 20, 20), dtype=torch.int64)
    classes[4:16, 4:16, 4:16] = 2
    classes[10, :, :] = 1
    out = smoothed_classes(classes, 8.0, 1.0)
    assert out.shape == classes.shape and out.dtype == classes.dtype
    assert int((out == 1).sum()) < int((classes == 1).sum()) and out[7, 10, 10] == 2 and out[0, 0, 0] == 0


def test_individualisation_changes_ventricles_and_cortex(label_folder):
    from multimodalgen.synthesis.fields import make_generator
    from multimodalgen.synthesis.head import individual_classes, sample_head_params
    from multimodalgen.synthesis.label_sources import read_label_folder

    tissue = torch.as_tensor(read_label_folder(label_folder).tissue)
    params = sample_head_params(np.random.default_rng(0), tuple(tissue.shape[1:]), 3.0)
    counts = {}
    for thickness in (-1.5, 1.5):
        params.thickness, params.jitter, params.folding = thickness, 0.0, 0.0
        classes = individual_classes(tissue, params, make_generator(0, "cpu"))
        counts[thickness] = int((classes == 1).sum())
    assert counts[1.5] > counts[-1.5]                                  # thicker cortex = more grey matter


def test_extracerebral_csf_is_thinned_to_the_subjects_shell():
    """CSF outside the brain farther than the shell from grey/white matter becomes skull; CSF enclosed by the brain
    (no outer probability: ventricles) is kept at any distance."""
    from multimodalgen.synthesis.head import thin_extracerebral_csf

    classes = torch.full((30, 30, 30), 4, dtype=torch.int64)          # skull everywhere
    classes[5:25, 5:25, 5:25] = 3                                      # a CSF shell 5 voxels thick ...
    classes[10:20, 10:20, 10:20] = 2                                   # ... around white matter
    classes[14:16, 14:16, 14:16] = 3                                   # a "ventricle" inside it
    outer = torch.ones_like(classes, dtype=torch.bool)
    outer[10:20, 10:20, 10:20] = False
    thin = thin_extracerebral_csf(classes, outer, 2.0)
    assert bool((thin[8:22, 8:22, 8:22][classes[8:22, 8:22, 8:22] == 3] == 3).all())   # within 2 voxels: kept
    assert int(thin[6, 15, 15]) == 4 and int(thin[23, 15, 15]) == 4                   # 4 and 4 voxels away: skull
    assert bool((thin[14:16, 14:16, 14:16] == 3).all())
    assert torch.equal(thin_extracerebral_csf(classes, outer, float("inf")), classes)


def test_head_batches_are_normalised_like_inference(label_folder):
    from multimodalgen.personalized.head_data import HeadBatches

    batches = HeadBatches(str(label_folder), ("T1", "CT"), 3.0, ct_window=(-100.0, 200.0))
    images, classes = batches.batch([1, 2], (16, 16, 16))
    assert images.shape == (2, 2, 16, 16, 16) and classes.shape == (2, 16, 16, 16)
    assert float(images.min()) >= 0.0 and float(images.max()) <= 1.0
    assert classes.dtype == torch.int64 and int(classes.max()) <= 5


def test_head_views_for_encoder_pretraining(label_folder):
    from multimodalgen.synthesis.head_views import render_head_views
    from multimodalgen.synthesis.label_sources import read_label_folder
    from multimodalgen.synthesis.subjects import HeadSubjectSampler

    sampler = HeadSubjectSampler(read_label_folder(label_folder))
    images, labels, roles = render_head_views(sampler, 3, (16, 16, 16), n_views=3)
    again = render_head_views(sampler, 3, (16, 16, 16), n_views=3)
    assert images.shape == labels.shape == roles.shape == (3, 16, 16, 16)
    assert torch.equal(images, again[0]) and torch.equal(labels[0], labels[2])
    assert float(images.min()) >= 0 and float(images.max()) <= 1
    assert set(torch.unique(roles).tolist()) <= {-1, 0, 1, 2}
    assert torch.equal(roles[0] == 1, (labels[0] // 4) == 1)                  # ribbon = grey matter


def test_encoder_pretraining_mixes_heads_and_refuses_a_bad_folder(tmp_path, label_folder):
    from multimodalgen.encoder.network import UNetConfig
    from multimodalgen.encoder.train import PretrainConfig, pretrain
    from multimodalgen.synthesis.config import EngineConfig

    net = UNetConfig(in_channels=1, out_channels=4, widths=(4, 6, 8), padding_mode="zeros")
    cfg = PretrainConfig(engine=EngineConfig(shape=(16, 16, 16)), network=net, steps=2, n_voxels=16,
                      label_dir=str(label_folder), p_head=1.0, checkpoint_every=1, log_every=1, warmup_steps=1)
    out = pretrain(cfg, tmp_path / "run", torch.device("cpu"))
    assert out["step"] == 2
    state = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert "synth-2" in state["engine_version"]
    # the export records the label maps' licences and a replayable (machine-independent) label folder
    from multimodalgen.encoder.weights import export_weights

    metrics = {"trained_row": "enc", "columns": ["probe_BOLD_heldout"], "probe_cross_mean": 0.7,
               "probe_heldout_min": 0.7, "rows": [{"method": "raw intensity", "probe_BOLD_heldout": 0.6},
                                                  {"method": "enc", "probe_BOLD_heldout": 0.7}]}
    info = export_weights(tmp_path / "run" / "last.pt", tmp_path / "enc", name="enc-v9", metrics=metrics)
    assert info["training_label_maps"]["tissue_probabilities.nii.gz"]["licence"].startswith("GPL-2")
    card = (tmp_path / "enc" / "MODEL_CARD.md").read_text()
    assert "`tissue_probabilities.nii.gz`" in card and "GPL-2" in card and "Synthetic only" not in card
    assert "Worst held-out contrast 0.700" in card and "NOT met" in card      # .7 < raw .6 + .15
    assert PretrainConfig.from_json(tmp_path / "enc" / "pretrain_config.json").label_dir == "labels"
    (tmp_path / "empty").mkdir()
    bad = PretrainConfig(engine=EngineConfig(shape=(16, 16, 16)), network=net, steps=1, n_voxels=16,
                      label_dir=str(tmp_path / "empty"), p_head=0.5)
    with pytest.raises(UserInputError, match="no label maps"):
        pretrain(bad, tmp_path / "run2", torch.device("cpu"))
    assert not (tmp_path / "run2" / "last.pt").exists()


def test_skull_is_layered_into_tables_and_diploe():
    """Cortical tables (sub-class 0) on both faces of the skull, diploe (1) between; every sampled subject has the
    two skull sub-classes the renderer needs."""
    from multimodalgen.synthesis.head import HEAD_CLASSES, sample_head_params, skull_layers

    skull = torch.zeros((12, 12, 12), dtype=torch.bool)
    skull[:, :, 3:9] = True                                            # a slab 6 voxels thick
    layers = skull_layers(skull, 2.0)
    assert bool((layers[:, :, 3:5] == 0).all()) and bool((layers[:, :, 7:9] == 0).all())
    assert bool((layers[:, :, 5:7] == 1).all()) and bool((layers[~skull] == 0).all())
    skull[:, :, 6:] = False                                            # 3 voxels: too thin for diploe
    assert int(skull_layers(skull, 2.0).max()) == 0
    for seed in range(5):
        params = sample_head_params(np.random.default_rng(seed), (16, 16, 16), 2.0)
        assert params.subclasses[HEAD_CLASSES.index("skull")] >= 2 and 1.0 <= params.skull_table_mm <= 2.5


def test_population_template_labels_are_the_members_majority_and_members_share_the_pose():
    from multimodalgen.synthesis.head import sample_head_params
    from multimodalgen.synthesis.subjects import member_params, population_classes, smoothed_classes

    a = torch.full((12, 12, 12), 2, dtype=torch.int64)
    b, c = a.clone(), a.clone()
    a[5], b[5], c[6] = 1, 1, 1                      # a ribbon where two of three members have it
    out = population_classes([a, b, c], 0.0, 1.0)
    assert out.dtype == torch.int64 and bool((out[5] == 1).all()) and bool((out[6] == 2).all())
    assert torch.equal(population_classes([a], 6.0, 2.0), smoothed_classes(a, 6.0, 2.0))
    rng = np.random.default_rng(0)
    first = sample_head_params(rng, (24, 24, 24), 3.0)
    other = member_params(rng, first)
    assert (other.rotation_deg, other.scale, other.shear, other.flip_lr, other.centre_offset_mm, other.subclasses) == (
        first.rotation_deg, first.scale, first.shear, first.flip_lr, first.centre_offset_mm, first.subclasses)
    assert other.seed != first.seed and other.folding != first.folding and other.elastic_mm[0] >= 2.0


def test_population_templates_are_deterministic_and_valid(label_folder):
    from multimodalgen.synthesis.label_sources import read_label_folder
    from multimodalgen.synthesis.subjects import HeadSubjectSampler

    sampler = HeadSubjectSampler(read_label_folder(label_folder))
    for seed in range(4):
        one = sampler.sample(seed, (24, 24, 24), 3.0, ("T1", "T2"), p_partial=0.0, p_template=1.0)
        two = sampler.sample(seed, (24, 24, 24), 3.0, ("T1", "T2"), p_partial=0.0, p_template=1.0)
        assert torch.equal(one.classes, two.classes) and torch.equal(one.images["T2"], two.images["T2"])
        assert set(one.classes.unique().tolist()) <= set(range(6)) and bool(torch.isfinite(one.images["T1"]).all())


def test_spm_brain_rule_gives_the_brain_edge_to_non_brain_and_keeps_the_interior():
    from multimodalgen.synthesis.head import CSF, GREY, SKULL, WHITE
    from multimodalgen.synthesis.subjects import population_classes

    # five members along one row of voxels (x = 0..5): interior white, a mixed interior voxel, an edge voxel where
    # CSF leads (2 of 5) but skull and soft tissue hold 3 of 5, and skull outside
    rows = [[WHITE, WHITE, GREY, CSF, SKULL, SKULL],
            [WHITE, WHITE, WHITE, CSF, SKULL, SKULL],
            [WHITE, WHITE, CSF, 5, SKULL, SKULL],
            [WHITE, GREY, GREY, SKULL, SKULL, SKULL],
            [WHITE, WHITE, CSF, 5, SKULL, SKULL]]
    members = [torch.tensor(r, dtype=torch.int64).view(6, 1, 1).expand(6, 2, 2).clone() for r in rows]
    plain = population_classes(members, 0.0, 1.0)[:, 0, 0].tolist()
    ruled = population_classes(members, 0.0, 1.0, brain_share=0.5)[:, 0, 0].tolist()
    assert plain == [WHITE, WHITE, GREY, CSF, SKULL, SKULL]     # x = 2: grey/CSF tie at 2 of 5 goes to grey
    # x = 2 (all brain, largest share .4) keeps its brain argmax: no hole; x = 3 (CSF .4 < .5, non-brain .6) -> the
    # largest non-brain class, soft tissue (2 of 5) beats skull (1 of 5)
    assert ruled == [WHITE, WHITE, GREY, 5, SKULL, SKULL]
    assert population_classes(members, 0.0, 1.0, brain_share=0.3)[3, 0, 0].item() == CSF


def test_brain_rule_subjects_are_deterministic_and_only_move_the_brain_edge(label_folder):
    from multimodalgen.synthesis.head import CSF, GREY, WHITE
    from multimodalgen.synthesis.label_sources import read_label_folder
    from multimodalgen.synthesis.subjects import HeadSubjectSampler

    sampler = HeadSubjectSampler(read_label_folder(label_folder))
    changed = 0
    for seed in range(4):
        plain = sampler.sample(seed, (24, 24, 24), 3.0, ("T1",), p_partial=0.0, p_template=1.0).classes
        ruled = sampler.sample(seed, (24, 24, 24), 3.0, ("T1",), p_partial=0.0, p_template=1.0,
                               template_brain_share=0.5)
        again = sampler.sample(seed, (24, 24, 24), 3.0, ("T1",), p_partial=0.0, p_template=1.0,
                               template_brain_share=0.5)
        assert torch.equal(ruled.classes, again.classes)
        brain = lambda c: (c == GREY) | (c == WHITE) | (c == CSF)   # noqa: E731
        # the rule only ever takes voxels away from the brain, never adds any
        assert not bool((brain(ruled.classes) & ~brain(plain)).any())
        changed += int((brain(plain) & ~brain(ruled.classes)).sum())
    assert changed > 0


def test_template_sulcal_csf_shift_only_changes_population_templates(label_folder):
    from multimodalgen.synthesis.head import CSF
    from multimodalgen.synthesis.label_sources import read_label_folder
    from multimodalgen.synthesis.subjects import HeadSubjectSampler

    sampler = HeadSubjectSampler(read_label_folder(label_folder))
    kw = dict(p_partial=0.0, max_offset_mm=0.0)
    sharp = sampler.sample(1, (24, 24, 24), 3.0, ("T1",), p_template=0.0, **kw)
    sharp_shifted = sampler.sample(1, (24, 24, 24), 3.0, ("T1",), p_template=0.0, template_sulcal_csf_shift=-2.0, **kw)
    assert torch.equal(sharp.classes, sharp_shifted.classes)      # not a template: untouched
    less = more = 0
    for seed in range(6):
        plain = sampler.sample(seed, (24, 24, 24), 3.0, ("T1",), p_template=1.0, **kw).classes
        shifted = sampler.sample(seed, (24, 24, 24), 3.0, ("T1",), p_template=1.0,
                                 template_sulcal_csf_shift=-2.0, **kw).classes
        less += int((plain == CSF).sum()) - int((shifted == CSF).sum())
        more += int(not torch.equal(plain, shifted))
    assert more > 0 and less > 0       # population templates among the six, with less CSF once shifted
