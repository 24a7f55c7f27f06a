"""Head-trained personalized models: synth-2 training, sliding-window inference, named and coded outputs."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from multimodalgen.personalized.model import PersonalizedNet
from multimodalgen.synthesis.subjects import SYNTH2_VERSION
from pers_helpers import tiny_config

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "synthesis"))
from synth2_helpers import write_fake_data_folder  # noqa: E402

HEAD_LABELS = ("background", "grey matter", "white matter", "cerebrospinal fluid", "skull", "soft tissue")


def head_config(**kwargs):
    return tiny_config(modalities=("T1", "T2", "CT"), labels=HEAD_LABELS, working_spacing=3.0,
                       ct_window=(-100.0, 200.0), **kwargs)


def test_train_on_head_subjects_and_resume(tmp_path):
    from multimodalgen.personalized.train import TrainConfig, train
    from multimodalgen.synthesis.label_sources import prepare_label_folder

    prepare_label_folder(write_fake_data_folder(tmp_path / "data"), tmp_path / "labels")
    cfg = TrainConfig(model=head_config(), shape=(16, 16, 16), steps=2, checkpoint_every=1, log_every=1,
                      label_dir=str(tmp_path / "labels"), max_present=2)
    train(cfg, tmp_path / "run")
    state = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert state["step"] == 2 and state["synth_version"].startswith("synth-2")
    import dataclasses

    train(dataclasses.replace(cfg, steps=3), tmp_path / "run")
    lines = (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1, 2, 3]


def test_train_stops_at_max_seconds_with_a_checkpoint_and_resumes(tmp_path):
    from multimodalgen.personalized.train import TrainConfig, train

    cfg = TrainConfig(model=tiny_config(), shape=(16, 16, 16), steps=5, checkpoint_every=100, log_every=1)
    train(cfg, tmp_path / "run", max_seconds=0.0)                   # stops after its first step
    assert torch.load(tmp_path / "run" / "last.pt", weights_only=True)["step"] == 1
    train(cfg, tmp_path / "run")
    assert torch.load(tmp_path / "run" / "last.pt", weights_only=True)["step"] == 5


def test_export_of_a_head_run_records_sources_template_subjects_and_history(tmp_path):
    from multimodalgen.personalized.export import export_run
    from multimodalgen.personalized.train import TrainConfig, train
    from multimodalgen.personalized.weights import load_model
    from multimodalgen.synthesis.label_sources import prepare_label_folder

    prepare_label_folder(write_fake_data_folder(tmp_path / "data"), tmp_path / "labels")
    cfg = TrainConfig(model=head_config(), shape=(16, 16, 16), steps=1, label_dir=str(tmp_path / "labels"),
                      p_template=1.0)
    train(cfg, tmp_path / "run")
    out = export_run(tmp_path / "run", tmp_path / "personalized-v9", {"dice": 0.5}, history="stage A then B",
                     refine_prior_power=0.5, refine_init="clusters")
    card = (out / "MODEL_CARD.md").read_text()
    assert "100% template-like subjects" in card and "- history: stage A then B" in card
    assert "intensity refinement prior power 0.5, clusters start" in card
    assert SYNTH2_VERSION in card and '"dice": 0.5' in card
    model, ref = load_model(out)
    assert ref.name == "personalized-v9" and len(ref.sha256) == 64 and model.config.labels == HEAD_LABELS
    assert model.config.refine_prior_power == 0.5 and model.config.refine_init == "clusters"
    assert json.loads((out / "pretrain_config.json").read_text())["label_dir"] == "LABELS"


def test_reconfigured_model_keeps_the_weights_and_changes_only_inference_settings(tmp_path):
    from safetensors.torch import load_file

    from multimodalgen.personalized.export import main as export_main
    from multimodalgen.personalized.export import reconfigure_model
    from multimodalgen.personalized.weights import load_model, save_model

    torch.manual_seed(0)
    save_model(tmp_path / "src-v1", PersonalizedNet(head_config()).eval(), name="src-v1",
               training={"steps": 7, "command": "train it"}, synth_version="synth-2.3")
    (tmp_path / "src-v1" / "MODEL_CARD.md").write_text("# src-v1\n\n## Training\n\n- steps: 7\n\n## Files\n\n- x\n")
    out = reconfigure_model(tmp_path / "src-v1", tmp_path / "src-v2", {"refine_prior_power": 0.5, "mirror_lr": True,
                                                                      "csf_shell_mm": 3.0},
                            {"dice": 0.6}, history="settings chosen on dev")
    before, after = load_file(tmp_path / "src-v1" / "model.safetensors"), load_file(out / "model.safetensors")
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    model, ref = load_model(out)
    assert ref.name == "src-v2" and model.config.refine_prior_power == 0.5 and model.config.mirror_lr
    assert model.config.csf_shell_mm == 3.0
    assert model.config.refine_init == "both"                                   # not given: the source's
    record = json.loads((out / "config.json").read_text())["provenance"]
    assert record["steps"] == 7 and record["derived_from"]["name"] == "src-v1"
    card = (out / "MODEL_CARD.md").read_text()
    assert "src-v1's weights unchanged" in card and "- steps: 7" in card and '"dice": 0.6' in card
    with pytest.raises(ValueError, match="inference settings"):
        reconfigure_model(tmp_path / "src-v1", tmp_path / "bad", {"head_width": 8})
    with pytest.raises(SystemExit):                              # --from-model without any setting: usage error
        export_main(["--from-model", str(tmp_path / "src-v1"), "--out", str(tmp_path / "none")])
    assert not (tmp_path / "none").exists()


def test_train_refuses_a_bad_label_folder(tmp_path):
    from multimodalgen.errors import UserInputError
    from multimodalgen.personalized.train import TrainConfig, train

    (tmp_path / "labels").mkdir()
    cfg = TrainConfig(model=head_config(), shape=(16, 16, 16), steps=1, label_dir=str(tmp_path / "labels"))
    with pytest.raises(UserInputError, match="no label maps"):
        train(cfg, tmp_path / "run")
    assert not (tmp_path / "run" / "last.pt").exists()


def test_sample_present_caps_and_never_empties():
    from multimodalgen.personalized.train import sample_present

    gen = torch.Generator().manual_seed(0)
    counts = torch.stack([sample_present(gen, 4, 6, "random", 0.45, 3).sum(1) for _ in range(200)])
    assert int(counts.min()) >= 1 and int(counts.max()) == 3


def test_p_single_draws_one_modality_that_often_and_leaves_the_default_stream_alone():
    from multimodalgen.personalized.train import TrainConfig, sample_present

    def draws(p_single):
        gen = torch.Generator().manual_seed(1)
        return torch.cat([sample_present(gen, 4, 6, "random", 0.45, 3, p_single) for _ in range(500)])

    default = draws(0.0)
    gen = torch.Generator().manual_seed(1)
    assert torch.equal(default, torch.cat([sample_present(gen, 4, 6, "random", 0.45, 3) for _ in range(500)]))
    single_share = float((default.sum(1) == 1).float().mean())
    assert 0.12 < single_share < 0.21                       # dropout alone: P(Binomial(6, .45) <= 1) = .164
    boosted = draws(0.5)
    share = float((boosted.sum(1) == 1).float().mean())
    assert 0.5 + 0.5 * 0.12 < share < 0.5 + 0.5 * 0.21       # half the rows forced single, the rest as before
    per_modality = boosted[boosted.sum(1) == 1].float().mean(0)
    assert float(per_modality.min()) > 0.12                 # every modality is drawn alone (uniform: 1/6 each)
    with pytest.raises(ValueError, match="p_single"):
        TrainConfig(p_single=1.5)


def test_sliding_window_equals_whole_volume_for_one_window_and_covers_larger():
    from multimodalgen.personalized.sliding import predict_logits, window_starts

    assert window_starts(40, 16) == [0, 8, 16, 24] or window_starts(40, 16)[-1] == 24
    assert window_starts(16, 16) == [0]
    torch.manual_seed(0)
    net = PersonalizedNet(head_config(patch_size=16)).eval()
    x, present = torch.rand(1, 3, 16, 16, 16), torch.tensor([[True, False, True]])
    torch.testing.assert_close(predict_logits(net, x, present), net(x, present, reconstruct=False)["logits"])
    big = torch.rand(1, 3, 24, 32, 20)
    out = predict_logits(net, big, present)
    assert out.shape == (1, 6, 24, 32, 20) and torch.isfinite(out).all()
    # a window's logits are exactly the network's on that window where only that window covers a voxel
    corner = net(big[..., :16, :16, :16], present, reconstruct=False)["logits"]
    torch.testing.assert_close(out[..., :4, :4, :4], corner[..., :4, :4, :4], atol=1e-4, rtol=1e-4)


def test_mirrored_logits_are_mirror_symmetric_and_pick_the_left_right_axis():
    from multimodalgen.personalized.sliding import left_right_axis, mirrored_logits, predict_logits

    assert left_right_axis(np.diag([2.0, 2.0, 2.0, 1.0])) == 0
    sagittal_first = np.array([[0, 0, 1.0, 0], [1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 0, 1]])   # voxel axis 2 = L-R
    assert left_right_axis(sagittal_first) == 2
    oblique = np.array([[0.3, 0.95, 0, 0], [0.95, -0.3, 0, 0], [0, 0, 1.0, 0], [0, 0, 0, 1]])
    assert left_right_axis(oblique) == 1
    torch.manual_seed(0)
    net = PersonalizedNet(head_config()).eval()
    x, present = torch.rand(1, 3, 16, 16, 16), torch.tensor([[True, False, True]])
    with torch.no_grad():
        out = mirrored_logits(net, x, present, axis=1)
        mirrored_input = mirrored_logits(net, x.flip(3), present, axis=1)
        plain = predict_logits(net, x, present)
    # the average over an input and its mirror image is the same whichever of the two is given
    torch.testing.assert_close(mirrored_input.flip(3), out, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(out, plain)                  # a random network is not symmetric: mirroring did something
    with pytest.raises(ValueError, match="axis"):
        mirrored_logits(net, x, present, axis=3)


def _random_net_and_t1():
    """A random head-label network and a 20 x 22 x 18 random T1 on a 2 mm grid."""
    from multimodalgen.volume import Volume

    torch.manual_seed(0)
    net = PersonalizedNet(head_config()).eval()
    return net, Volume(np.random.default_rng(0).random((20, 22, 18)).astype(np.float32),
                       np.diag([2.0, 2.0, 2.0, 1.0]), "T1")


def test_segment_with_mirroring_runs_the_network_twice(monkeypatch):
    import dataclasses

    import multimodalgen.personalized.inference as inference
    import multimodalgen.personalized.sliding as sliding
    from multimodalgen.personalized.inference import segment_volumes

    net, t1 = _random_net_and_t1()
    calls = []
    real = sliding.predict_logits
    for module in (sliding, inference):
        monkeypatch.setattr(module, "predict_logits", lambda *a, **k: calls.append(1) or real(*a, **k))
    segment_volumes({"T1": t1}, model=net, refine="none")
    assert len(calls) == 1
    net.config = dataclasses.replace(net.config, mirror_lr=True)
    mirrored = segment_volumes({"T1": t1}, model=net, refine="none")
    assert len(calls) == 3 and mirrored.shape3d == (20, 22, 18)


def test_segment_applies_the_models_csf_shell_after_the_refinement_only(monkeypatch):
    import dataclasses

    from multimodalgen.personalized import inference
    from multimodalgen.personalized.inference import segment_volumes

    net, t1 = _random_net_and_t1()
    seen = []
    real = inference.close_csf_shell
    monkeypatch.setattr(inference, "close_csf_shell", lambda p, names, spacing, mm: seen.append((tuple(spacing), mm))
                        or real(p, names, spacing, mm))
    net.config = dataclasses.replace(net.config, csf_shell_mm=3.0)
    refined = segment_volumes({"T1": t1}, model=net)
    assert seen == [((2.0, 2.0, 2.0), 3.0)] and "CSF shell 3 mm" in refined.metadata["refine"]
    segment_volumes({"T1": t1}, model=net, refine="none")          # the network's answer as is: no shell
    assert len(seen) == 1


def test_segment_outputs_named_coded_segments(tmp_path):
    from multimodalgen.personalized.inference import segment_volumes
    from multimodalgen.volume import Volume

    torch.manual_seed(0)
    net = PersonalizedNet(head_config(patch_size=16)).eval()
    rng = np.random.default_rng(0)
    t1 = Volume(rng.random((20, 22, 18)).astype(np.float32), np.diag([2.0, 2.0, 2.0, 1.0]), "T1")
    ct = Volume((rng.random((20, 22, 18)) * 2000 - 1000).astype(np.float32), t1.affine, "CT")
    labels = segment_volumes({"T1": t1, "CT": ct}, model=net)
    assert labels.shape3d == (20, 22, 18)
    segments = {s["label"]: s for s in labels.metadata["segments"]}
    assert segments[1]["name"] == "grey matter" and "SCT^40146001" in segments[1]["terminology"]
    assert segments[3]["name"] == "cerebrospinal fluid" and "SCT^65216001" in segments[3]["terminology"]
    from multimodalgen.io.segmentation import read_segmentation, write_segmentation

    write_segmentation(labels, str(tmp_path / "out.seg.nrrd"))
    back = read_segmentation(str(tmp_path / "out.seg.nrrd"))
    names = {s["name"]: s for s in back.metadata["segments"]}
    present = {segments[v]["name"] for v in np.unique(labels.array) if v}
    assert present == set(names) and all(names[n]["terminology"] for n in present)


def test_load_matching_grows_modalities():
    from multimodalgen.personalized.train import load_matching

    small = PersonalizedNet(tiny_config())
    big = PersonalizedNet(tiny_config(modalities=("T1", "T2", "PD", "FLAIR"), labels=HEAD_LABELS))
    with torch.no_grad():
        small.modality_embedding.fill_(0.5)
    skipped = load_matching(big, small.state_dict())
    assert torch.equal(big.modality_embedding[:3], small.modality_embedding)
    assert any(k.startswith("seg_head") for k in skipped)                  # other classes: not copied
    torch.testing.assert_close(big.encoder.stem[0].weight, small.encoder.stem[0].weight)


def test_adapter_label_set_from_seg_nrrd_starts_from_the_base_head(tmp_path):
    from multimodalgen.io.segmentation import write_segmentation
    from multimodalgen.personalized.finetune import FinetuneConfig, names_from_label_file, prepare_model
    from multimodalgen.volume import Volume

    labels = np.zeros((6, 6, 6), np.uint8)
    labels[1:3], labels[3:5] = 1, 2
    segments = [{"label": 1, "name": "WM", "color": [1, 1, 1]}, {"label": 2, "name": "grey matter", "color": [1, 0, 0]}]
    write_segmentation(Volume(labels, np.eye(4), "LABEL", {"segments": segments}), str(tmp_path / "l.seg.nrrd"))
    names = names_from_label_file(tmp_path / "l.seg.nrrd")
    assert names == ("background", "WM", "grey matter")
    torch.manual_seed(0)
    base = PersonalizedNet(head_config()).eval()
    model, params = prepare_model(base, names, FinetuneConfig())
    w, bw = model.seg_head[-1].weight, base.seg_head[-1].weight
    torch.testing.assert_close(w[1], bw[2])          # "WM" row <- base "white matter"
    torch.testing.assert_close(w[2], bw[1])          # "grey matter" row <- base "grey matter"
    torch.testing.assert_close(w[0], bw[0])
    assert model.config.labels == names
