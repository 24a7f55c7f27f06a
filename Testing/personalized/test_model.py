"""PersonalizedNet: masked mean over any subset, absent modalities ignored, Early Intervention zero-init, losses,
synthetic subjects, training resume, test-time personalization, save/load."""

from __future__ import annotations

import dataclasses
import itertools

import pytest
import torch

from multimodalgen.personalized.losses import (gm_coord_coefficients, invariance_loss, random_patch_mask,
                                               scale_gradient, segmentation_loss)
from multimodalgen.personalized.model import PersonalizedNet, masked_mean

from pers_helpers import tiny_config

SUBSETS = [s for r in (1, 2, 3) for s in itertools.combinations(range(3), r)]


@pytest.mark.parametrize("subset", SUBSETS)
def test_masked_mean_any_subset(subset):
    z = torch.randn(2, 3, 4, 5, 5, 5)
    present = torch.zeros(2, 3, dtype=torch.bool)
    present[:, list(subset)] = True
    expected = z[:, list(subset)].mean(dim=1)
    torch.testing.assert_close(masked_mean(z, present), expected)
    z2 = z.clone()
    absent = [k for k in range(3) if k not in subset]
    z2[:, absent] = 1e6  # absent content must not leak in
    torch.testing.assert_close(masked_mean(z2, present), expected)


def test_masked_mean_refuses_empty_subject():
    with pytest.raises(ValueError, match="at least one modality"):
        masked_mean(torch.randn(1, 3, 2, 2, 2, 2), torch.zeros(1, 3, dtype=torch.bool))


@pytest.mark.parametrize("subset", SUBSETS)
def test_model_ignores_absent_modalities(subset):
    torch.manual_seed(0)
    net = PersonalizedNet(tiny_config()).eval()
    x = torch.rand(1, 3, 8, 8, 8)
    present = torch.zeros(1, 3, dtype=torch.bool)
    present[:, list(subset)] = True
    out = net(x, present)
    assert out["logits"].shape == (1, 4, 8, 8, 8) and out["recon"].shape == (1, 3, 8, 8, 8)
    x2 = x.clone()
    x2[:, [k for k in range(3) if k not in subset]] = torch.rand(1, 3 - len(subset), 8, 8, 8)
    torch.testing.assert_close(net(x2, present)["logits"], out["logits"])


def test_early_intervention_starts_as_noop_and_then_conditions():
    torch.manual_seed(0)
    plain = PersonalizedNet(tiny_config()).eval()
    ei = PersonalizedNet(tiny_config(early_intervention=True)).eval()
    ei.load_state_dict(plain.state_dict(), strict=False)
    x, present = torch.rand(1, 3, 8, 8, 8), torch.tensor([[True, True, False]])
    torch.testing.assert_close(ei(x, present)["logits"], plain(x, present)["logits"])
    with torch.no_grad():
        ei.ei_proj[-1].bias.normal_()
    z_plain, z_ei = plain.encode(x, present), ei.encode(x, present)
    torch.testing.assert_close(z_ei[:, 0], z_plain[:, 0])          # the reference modality is unchanged
    assert not torch.allclose(z_ei[:, 1], z_plain[:, 1])           # the others are conditioned on it


def test_losses_and_gm_coord():
    torch.manual_seed(0)
    net = PersonalizedNet(tiny_config()).eval()
    x, present = torch.rand(1, 3, 8, 8, 8), torch.ones(1, 3, dtype=torch.bool)
    labels = torch.randint(0, 4, (1, 8, 8, 8))
    z = net.encode(x, present)
    assert float(invariance_loss(z, present).detach()) >= 0
    assert float(invariance_loss(z, torch.tensor([[True, False, False]]))) == 0.0
    coeffs = gm_coord_coefficients(net, z, present, labels, eta=0.5)
    assert coeffs.shape == (3,) and bool((coeffs <= 1).all()) and bool((coeffs > 0).all())
    z = z.detach().requires_grad_(True)
    scale_gradient(z, torch.tensor([1.0, 0.5, 0.0])).sum().backward()
    assert torch.allclose(z.grad[:, 1], torch.full_like(z.grad[:, 1], 0.5)) and bool((z.grad[:, 2] == 0).all())
    mask = random_patch_mask((1, 3, 8, 8, 8), 0.75, 4, torch.Generator().manual_seed(0))
    assert abs(float(mask.float().mean()) - 0.75) < 1e-6
    perfect = torch.nn.functional.one_hot(labels, 4).permute(0, 4, 1, 2, 3).float() * 50
    assert float(segmentation_loss(perfect, labels)) < 0.01


def test_synthetic_subjects_deterministic():
    from multimodalgen.personalized.synthetic import sample_subject

    a, la = sample_subject(5, (16, 16, 16), ("T1", "T2", "PD"))
    b, lb = sample_subject(5, (16, 16, 16), ("T1", "T2", "PD"))
    assert a.shape == (3, 16, 16, 16) and torch.equal(a, b) and torch.equal(la, lb)
    assert int(la.max()) <= 3 and float(a.min()) >= 0 and float(a.max()) <= 1
    assert not torch.allclose(a[0], a[1])  # different contrasts of one subject


def test_training_runs_and_resumes(tmp_path):
    from multimodalgen.personalized.train import TrainConfig, train

    cfg = TrainConfig(model=tiny_config(), shape=(16, 16, 16), steps=2, checkpoint_every=1, log_every=1,
                      mr_pretrain=True, gm_coord=True)
    train(cfg, tmp_path)
    state = torch.load(tmp_path / "last.pt", weights_only=True)
    assert state["step"] == 2
    import dataclasses

    train(dataclasses.replace(cfg, steps=3), tmp_path)  # resumes at step 2
    lines = (tmp_path / "train_log.jsonl").read_text().splitlines()
    assert [int(line.split('"step": ')[1].split(",")[0]) for line in lines] == [1, 2, 3]


def test_ttp_adapts_a_copy_and_lowers_reconstruction_error():
    from multimodalgen.personalized.losses import reconstruction_loss
    from multimodalgen.personalized.ttp import personalize

    torch.manual_seed(0)
    net = PersonalizedNet(tiny_config()).eval()
    x, present = torch.rand(1, 3, 8, 8, 8), torch.tensor([[True, False, True]])
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with torch.no_grad():
        err0 = float(reconstruction_loss(net(x, present)["recon"], x, present))
    adapted, seconds = personalize(net, x, present, steps=15, lr=2e-2)
    with torch.no_grad():
        err1 = float(reconstruction_loss(adapted(x, present)["recon"], x, present))
    assert seconds > 0 and err1 < err0
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())


def test_save_load_round_trip(tiny_model_dir):
    import json

    from multimodalgen.personalized.weights import load_model

    model, ref = load_model(tiny_model_dir)
    config = json.loads((tiny_model_dir / "config.json").read_text())
    assert config["kind"] == "personalized" and ref.sha256 == config["sha256"]
    x, present = torch.rand(1, 3, 8, 8, 8), torch.ones(1, 3, dtype=torch.bool)
    assert model(x, present)["logits"].dtype == torch.float32


def test_subset_predictions_from_one_encoding_match_separate_forwards():
    from multimodalgen.personalized.evaluate import all_subsets, predict, predict_subsets, present_mask

    torch.manual_seed(0)
    net = PersonalizedNet(tiny_config()).eval()
    mods = net.config.modalities
    x = torch.rand(1, 3, 8, 8, 8)
    fast = predict_subsets(net, x, all_subsets(mods), mods)
    assert len(fast) == 7
    for subset in all_subsets(mods):
        torch.testing.assert_close(fast["+".join(subset)], predict(net, x, present_mask(subset, mods)),
                                   atol=1e-5, rtol=1e-5)


def test_volume_norm_uses_each_volume_statistics_in_eval_mode():
    """encoder_norm="volume": no running statistics; eval output is exactly invariant to a global intensity scale
    of one modality (bias-free convolutions + per-volume normalisation) and independent of the batch partner."""
    from multimodalgen.personalized.config import PersonalizedConfig
    from multimodalgen.personalized.model import PersonalizedNet

    torch.manual_seed(0)
    model = PersonalizedNet(tiny_config()).eval()
    assert all(m.running_mean is None for m in model.encoder.modules() if isinstance(m, torch.nn.BatchNorm3d))
    x = torch.rand(1, 3, 8, 8, 8)
    present = torch.tensor([[True, False, False]])
    z1 = model.encode(x, present)[0, 0]
    z2 = model.encode(x * 3.0, present)[0, 0]
    assert torch.allclose(z1, z2, atol=1e-4)
    both = model.encode(torch.cat([x, torch.rand(1, 3, 8, 8, 8)]), present.repeat(2, 1))
    assert torch.allclose(both[0, 0], z1, atol=1e-5)  # one volume per encoder call: no batch-partner effect
    old = PersonalizedConfig.from_dict({k: v for k, v in tiny_config().to_dict().items() if k != "encoder_norm"})
    assert old.encoder_norm == "running"  # configs from before the option keep their behaviour
    assert PersonalizedNet(old).encoder.stem[1].running_mean is not None


def test_working_spacing_round_trip_and_segment_on_native_grid():
    """A model with a working spacing runs on a resampled grid and returns labels on the images' own grid."""
    import numpy as np

    from multimodalgen.personalized.inference import segment_volumes
    from multimodalgen.personalized.prepare import from_working_grid, to_working_grid, working_size
    from multimodalgen.volume import Volume

    assert working_size((40, 30, 20), (1.0, 2.0, 4.0), 4.0) == (10, 15, 20)
    assert working_size((40, 30, 20), (1.0, 2.0, 4.0), 0.0) == (40, 30, 20)
    x = torch.rand(1, 3, 40, 30, 20)
    small = to_working_grid(x, (1.0, 2.0, 4.0), 4.0)
    assert small.shape == (1, 3, 10, 15, 20)
    assert from_working_grid(small, (40, 30, 20)).shape == x.shape
    labels = torch.randint(0, 4, (1, 40, 30, 20))
    small_labels = to_working_grid(labels, (1.0, 2.0, 4.0), 4.0, labels=True)
    assert small_labels.shape == (1, 10, 15, 20) and small_labels.dtype == labels.dtype
    assert set(small_labels.unique().tolist()) <= set(range(4))
    with pytest.raises(ValueError):
        tiny_config(working_spacing=-1.0)
    with pytest.raises(ValueError, match="refine_prior_power"):
        tiny_config(refine_prior_power=1.5)
    with pytest.raises(ValueError, match="refine_init"):
        tiny_config(refine_init="kmeans")
    torch.manual_seed(0)
    model = PersonalizedNet(tiny_config(working_spacing=2.0)).eval()
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    image = Volume(np.random.default_rng(0).random((24, 20, 16)).astype(np.float32), affine, "T1")
    out = segment_volumes({"T1": image}, model=model)
    assert out.array.shape == (24, 20, 16) and out.array.dtype == np.uint8
    assert "prior power 0.3" in out.metadata["refine"]                   # the model's refinement setting is used
    model.config = dataclasses.replace(model.config, refine_prior_power=0.7, refine_init="clusters")
    assert "prior power 0.7, 2 Gaussians per class, clusters start" in segment_volumes({"T1": image},
                                                                                      model=model).metadata["refine"]
