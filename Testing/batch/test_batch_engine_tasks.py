"""Adapters from manifest rows to the engines' file-level functions (`batch.engine_tasks`)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from multimodalgen.batch import engine_tasks, run
from multimodalgen.batch.engine_tasks import call_with_supported, dice_metrics, split_result


def _label_file(path, array, spacing=2.0):
    from multimodalgen.io import write_label
    from multimodalgen.volume import Volume

    write_label(Volume(array.astype(np.uint8), np.diag([spacing] * 3 + [1.0]), "LABEL"), path)
    return path


def test_call_with_supported_drops_unknown_and_none():
    def engine(a, *, mode="x", device="cpu"):
        return (a, mode, device)

    assert call_with_supported(engine, 1, mode=None, device="cuda", fixed_labels="f") == (1, "x", "cuda")
    assert call_with_supported(lambda a, **kw: kw, 1, b=2, c=None) == {"b": 2}


def test_split_result_outputs_metrics_timings(tmp_path):
    (tmp_path / "warped.nii.gz").write_bytes(b"x")
    (tmp_path / "report.json").write_text("{}")
    report = {"outputs": ["warped.nii.gz", "gone.nii.gz"], "similarity_after": 0.1, "mode": "affine",
              "jacobian": {"min": 0.8, "kind": "x"}, "timings_s": {"linear": 1.5, "note": "n"}, "flag": True}
    result = split_result(report, tmp_path)
    assert result["outputs"] == {"warped": "warped.nii.gz", "report": "report.json"}
    assert result["metrics"] == {"similarity_after": 0.1, "jacobian_min": 0.8}
    assert result["timings"] == {"linear": 1.5}
    assert split_result({"outputs": {"seg": "../escape.nii.gz"}}, tmp_path / "sub")["outputs"] == {}


def test_dice_metrics(tmp_path):
    a = np.zeros((10, 10, 10))
    b = np.zeros((10, 10, 10))
    a[2:6, 2:6, 2:6] = 1
    b[2:6, 2:6, 3:7] = 1  # 48 of 64 voxels overlap
    b[8, 8, 8] = 2
    scores = dice_metrics(_label_file(tmp_path / "a.nii.gz", a), _label_file(tmp_path / "b.nii.gz", b))
    assert scores["dice_1"] == pytest.approx(0.75) and scores["dice_2"] == 0.0
    assert scores["dice_mean"] == pytest.approx(0.375)


def test_register_rows_reach_the_engine_and_dice_is_added(tmp_path, monkeypatch):
    """The adapter passes the row's files, options and device to register_files and adds Dice on fixed_labels."""
    calls = []

    def fake_register_files(fixed, moving, out_dir, *, moving_labels=None, fixed_mask=None, mode="deformable",
                            preset="fast", device="cpu", progress=None):
        calls.append({"fixed": fixed, "moving": moving, "moving_labels": moving_labels, "mode": mode,
                      "preset": preset, "device": device})
        shutil.copy(moving_labels, f"{out_dir}/warped_labels.nii.gz")  # stands in for the warped labels
        return {"outputs": ["warped_labels.nii.gz"], "similarity_after": 0.2, "timings_s": {"total": 0.1}}

    monkeypatch.setattr(engine_tasks, "_engine", lambda *args: fake_register_files)
    cube = np.zeros((8, 8, 8))
    cube[2:6, 2:6, 2:6] = 1
    _label_file(tmp_path / "ml.nii.gz", cube)
    _label_file(tmp_path / "fl.nii.gz", cube)
    for name in ("f.nii.gz", "m.nii.gz"):
        (tmp_path / name).write_bytes(b"image")
    (tmp_path / "S.csv").write_text("study_id,fixed,moving,moving_labels,fixed_labels\n"
                                    "a,f.nii.gz,m.nii.gz,ml.nii.gz,fl.nii.gz\n")
    summary = run(tmp_path / "S.csv", "register", tmp_path / "out", workers=0, device="cpu",
                  options={"mode": "affine"})
    assert summary.done == 1, summary.failed_ids
    assert calls == [{"fixed": str(tmp_path / "f.nii.gz"), "moving": str(tmp_path / "m.nii.gz"),
                      "moving_labels": str(tmp_path / "ml.nii.gz"), "mode": "affine", "preset": "fast",
                      "device": "cpu"}]
    status = json.loads((tmp_path / "out" / "a" / "status.json").read_text())
    assert status["metrics"] == {"similarity_after": 0.2, "dice_1": 1.0, "dice_mean": 1.0}
    assert status["outputs"] == {"warped_labels": "warped_labels.nii.gz"} and status["timings"]["total"] == 0.1


@pytest.mark.slow
def test_register_task_with_the_real_engine(tmp_path):
    """One small synthetic pair through the real registration engine (about a minute on a loaded 2-core CPU)."""
    pytest.importorskip("multimodalgen.registration.api")
    from multimodalgen.io import write_label, write_volume
    from multimodalgen.volume import Volume

    grid = np.stack(np.meshgrid(*[np.arange(s, dtype=np.float32) for s in (24, 24, 16)], indexing="ij"))
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    for name, shift in (("fixed", 0.0), ("moving", 1.5)):
        centre = np.array([12.0 + shift, 11.0, 8.0])[:, None, None, None]
        ball = ((grid - centre) ** 2).sum(0) < 36
        image = 100 + 500.0 * ball + 20 * grid[1] if name == "fixed" else 700 - 500.0 * ball + 20 * grid[1]
        write_volume(Volume(image.astype(np.float32), affine, "T1"), tmp_path / f"{name}.nii.gz")
        write_label(Volume(ball.astype(np.uint8), affine, "LABEL"), tmp_path / f"{name}_labels.nii.gz")
    (tmp_path / "S.csv").write_text("study_id,fixed,moving,moving_labels,fixed_labels\n"
                                    "p1,fixed.nii.gz,moving.nii.gz,moving_labels.nii.gz,fixed_labels.nii.gz\n")
    summary = run(tmp_path / "S.csv", "register", tmp_path / "out", workers=0, device="cpu", threads=1,
                  options={"preset": "fast"})
    assert summary.done == 1, summary.failed_ids
    status = summary.statuses[0]
    for name in ("transform", "warped", "warped_labels"):
        assert (tmp_path / "out" / "p1" / status["outputs"][name]).is_file()
    before = dice_metrics(tmp_path / "moving_labels.nii.gz", tmp_path / "fixed_labels.nii.gz")["dice_mean"]
    assert status["metrics"]["dice_mean"] > max(0.8, before)


def _image_file(path, value=1.0):
    from multimodalgen.io import write_volume
    from multimodalgen.volume import Volume

    write_volume(Volume(np.full((8, 8, 8), value, np.float32), np.diag([2.0, 2.0, 2.0, 1.0]), "T1"), path)
    return path


def test_segment_rows_load_the_model_once_per_worker(tmp_path, monkeypatch):
    """Any subset of modalities per study reaches segment_volumes with the worker's cached model."""
    from multimodalgen.volume import Volume

    loads, calls = [], []

    def load_with_adapter(adapter, base_model, device):
        loads.append((adapter, base_model, device))
        return "MODEL", {"adapter": "brain"}

    def segment_volumes(images, adapter, device, progress, *, model=None, ttp_steps=0):
        calls.append((sorted(images), [v.modality for v in images.values()], model, ttp_steps))
        first = next(iter(images.values()))
        return Volume((first.array > 0).astype(np.uint8), first.affine, "LABEL")

    fakes = {"load_with_adapter": load_with_adapter, "segment_volumes": segment_volumes}
    monkeypatch.setattr(engine_tasks, "_engine", lambda module, name, task: fakes[name])
    _image_file(tmp_path / "t1.nii.gz")
    _image_file(tmp_path / "t2.nii.gz")
    _label_file(tmp_path / "ref.nii.gz", np.ones((8, 8, 8)))
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (tmp_path / "S.csv").write_text("study_id,T1,t2,label\na,t1.nii.gz,t2.nii.gz,ref.nii.gz\nb,,t2.nii.gz,\n")
    summary = run(tmp_path / "S.csv", "segment", tmp_path / "out", workers=0, device="cpu",
                  options={"adapter": str(adapter), "ttp_steps": 3})
    assert summary.done == 2, summary.failed_ids
    assert loads == [(str(adapter), None, "cpu")]  # one load for both studies
    assert calls == [(["T1", "T2"], ["T1", "T2"], "MODEL", 3), (["T2"], ["T2"], "MODEL", 3)]
    first, second = summary.statuses
    assert first["metrics"]["dice_mean"] == 1.0 and first["metrics"]["modalities"] == "T1+T2"
    assert "dice_mean" not in second["metrics"] and second["outputs"] == {"labels": "labels.nii.gz"}
    assert (tmp_path / "out" / "b" / "labels.nii.gz").is_file()


def test_fewshot_apply_rows_keep_manifest_order(tmp_path, monkeypatch):
    from multimodalgen.volume import Volume

    loads, calls = [], []

    def load_task(path):
        loads.append(path)
        return "TASK"

    def apply_task(task, images, *, device="cpu", progress=None):
        calls.append((task, [v.modality for v in images], float(images[0].array.mean()), str(device)))
        return Volume(np.ones(images[0].shape3d, np.uint8), images[0].affine, "LABEL",
                      {"fewshot": {"voxels": {1: 512}}})

    fakes = {"load_task": load_task, "apply_task": apply_task}
    monkeypatch.setattr(engine_tasks, "_engine", lambda module, name, task: fakes[name])
    _image_file(tmp_path / "ct.nii.gz", 5.0)
    _image_file(tmp_path / "img.nii.gz", 7.0)
    task_dir = tmp_path / "liver.task"
    task_dir.mkdir()
    (tmp_path / "S.csv").write_text("study_id,image,CT\na,img.nii.gz,ct.nii.gz\nb,img.nii.gz,ct.nii.gz\n")
    summary = run(tmp_path / "S.csv", "fewshot-apply", tmp_path / "out", workers=0, device="cpu",
                  options={"fewshot_task": str(task_dir)})
    assert summary.done == 2, summary.failed_ids
    assert loads == [str(task_dir)]
    assert calls == [("TASK", [None, "CT"], 7.0, "cpu")] * 2
    assert summary.statuses[0]["metrics"] == {"voxels_1": 512}
    assert summary.statuses[0]["inputs"]["option:fewshot_task"]["sha256"]  # the task is part of the fingerprint


def test_fewshot_apply_with_the_real_engine(tmp_path):
    """A task saved from two painted slices of one image, applied by the batch to two other patients."""
    pytest.importorskip("multimodalgen.fewshot.task")
    from multimodalgen.fewshot.api import segment_files
    from multimodalgen.io import write_label, write_volume
    from multimodalgen.volume import Volume

    affine = np.diag([1.0, 1.0, 2.0, 1.0])
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in (32, 32, 16)], indexing="ij")).astype(np.float32)
    rng = np.random.default_rng(0)
    for name, centre in (("support", (16, 16, 8)), ("q1", (14, 17, 7)), ("q2", (18, 15, 8))):
        offset = (grid - np.array(centre, np.float32)[:, None, None, None]) * np.array([1, 1, 2])[:, None, None, None]
        ball = (offset ** 2).sum(0) < 81
        image = (100 + 400 * ball + rng.normal(0, 10, ball.shape)).astype(np.float32)
        write_volume(Volume(image, affine, "T1"), tmp_path / f"{name}.nii.gz")
        write_label(Volume(ball.astype(np.uint8), affine, "LABEL"), tmp_path / f"{name}_ref.nii.gz")
        if name == "support":
            painting = np.zeros(ball.shape, np.uint8)
            painting[:, :, [5, 8]] = ball[:, :, [5, 8]]
            write_label(Volume(painting, affine, "LABEL"), tmp_path / "painting.nii.gz")
    segment_files([("T1", str(tmp_path / "support.nii.gz"))], tmp_path / "painting.nii.gz",
                  tmp_path / "support_seg.nii.gz", save_task=tmp_path / "ball.task")
    (tmp_path / "S.csv").write_text("study_id,T1,label\nq1,q1.nii.gz,q1_ref.nii.gz\nq2,q2.nii.gz,q2_ref.nii.gz\n")
    summary = run(tmp_path / "S.csv", "fewshot-apply", tmp_path / "out", workers=0, device="cpu",
                  options={"fewshot_task": str(tmp_path / "ball.task")})
    assert summary.done == 2, summary.failed_ids
    assert all(status["metrics"]["dice_1"] > 0.8 for status in summary.statuses)
