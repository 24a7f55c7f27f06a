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
    out = export_run(tmp_path / "run", tmp_path / "personalized-v9", {"dice": 0.5}, history="stage A then B")
    card = (out / "MODEL_CARD.md").read_text()
    assert "100% template-like subjects" in card and "- history: stage A then B" in card
    assert SYNTH2_VERSION in card and '"dice": 0.5' in card
    model, ref = load_model(out)
    assert ref.name == "personalized-v9" and len(ref.sha256) == 64 and model.config.labels == HEAD_LABELS
    assert json.loads((out / "pretrain_config.json").read_text())["label_dir"] == "LABELS"


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
