"""Batch's door to the verb registry: manifest rows -> verb parameters -> `run_verb` -> study results."""

from __future__ import annotations


import numpy as np
import pytest

from multimodalgen.batch import run
from multimodalgen.batch.tasks import get_task
from multimodalgen.batch.verb_study import flat_metrics, study_params
from multimodalgen.dice import dice_files
from multimodalgen.errors import UserInputError
from multimodalgen.verbs import run_verb


def _label_file(path, array, spacing=2.0):
    from multimodalgen.io import write_label
    from multimodalgen.volume import Volume

    write_label(Volume(array.astype(np.uint8), np.diag([spacing] * 3 + [1.0]), "LABEL"), path)
    return path


def test_unknown_parameters_are_refused_not_dropped(tmp_path):
    with pytest.raises(UserInputError, match="no parameter.*fixed_labelz"):
        run_verb("register", {"fixed": "f", "moving": "m", "fixed_labelz": "x"}, tmp_path)
    with pytest.raises(UserInputError, match="wrong type"):
        run_verb("register", {"fixed": "f", "moving": "m", "overlay": "yes"}, tmp_path)


def test_study_params_follow_one_rule_per_column_kind():
    register = study_params(get_task("register"), {"fixed": "/f", "moving": "/m", "moving_labels": None,
                                                   "fixed_labels": "/fl"}, {"mode": "affine"})
    assert register == {"fixed": "/f", "moving": "/m", "fixed_labels": "/fl", "mode": "affine"}
    segment = study_params(get_task("segment"), {"T1": "/t1", "T2": None, "label": "/ref"}, {"ttp_steps": 2})
    assert segment == {"images": {"T1": "/t1"}, "reference_label": "/ref", "ttp_steps": 2}
    fewshot = study_params(get_task("fewshot-apply"), {"image": "/i", "CT": "/ct"}, {"fewshot_task": "/t"})
    assert fewshot == {"images": ["/i", "/ct"], "modalities": [None, "CT"], "apply_task": "/t"}


def test_flat_metrics():
    flat = flat_metrics({"jacobian": {"min": 0.5}, "dice": {"dice_1": 1.0, "dice_mean": 1.0}, "labels": [1, 2],
                         "n": 3})
    assert flat == {"jacobian_min": 0.5, "dice_1": 1.0, "dice_mean": 1.0, "labels": "1,2", "n": 3}


def test_dice_metrics(tmp_path):
    a = np.zeros((10, 10, 10))
    b = np.zeros((10, 10, 10))
    a[2:6, 2:6, 2:6] = 1
    b[2:6, 2:6, 3:7] = 1  # 48 of 64 voxels overlap
    b[8, 8, 8] = 2
    scores = dice_files(_label_file(tmp_path / "a.nii.gz", a), _label_file(tmp_path / "b.nii.gz", b))
    assert scores["dice_1"] == pytest.approx(0.75) and scores["dice_2"] == 0.0
    assert scores["dice_mean"] == pytest.approx(0.375)


@pytest.mark.slow
def test_register_task_with_the_real_engine(tmp_path):
    """One small synthetic pair through the real registration engine (about a minute on a loaded 2-core CPU)."""
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
    before = dice_files(tmp_path / "moving_labels.nii.gz", tmp_path / "fixed_labels.nii.gz")["dice_mean"]
    assert status["metrics"]["dice_mean"] > max(0.8, before)


def _image_file(path, value=1.0):
    from multimodalgen.io import write_volume
    from multimodalgen.volume import Volume

    write_volume(Volume(np.full((8, 8, 8), value, np.float32), np.diag([2.0, 2.0, 2.0, 1.0]), "T1"), path)
    return path


def test_segment_rows_load_the_model_once_per_worker(tmp_path, monkeypatch):
    """Any subset of modalities per study reaches segment_volumes with the worker's cached model (and the task's
    tissue atlas, read by the driver, with its weight)."""
    import nibabel as nib

    from multimodalgen.volume import Volume

    loads, calls, atlases = [], [], []

    def load_with_adapter(adapter, base_model, device):
        loads.append((adapter, base_model, device))
        return "MODEL", {"adapter": "brain"}

    def segment_volumes(images, adapter, device, progress, *, model=None, ttp_steps=0, resample=False, refine="intensity",
                        atlas=None, atlas_weight=4.0, return_probabilities=False):
        calls.append((sorted(images), [v.modality for v in images.values()], model, ttp_steps))
        atlases.append((atlas.source, atlas.maps.shape, atlas_weight))
        first = next(iter(images.values()))
        return Volume((first.array > 0).astype(np.uint8), first.affine, "LABEL", {"modalities": sorted(images)})

    from multimodalgen.personalized import inference

    monkeypatch.setattr(inference, "load_with_adapter", load_with_adapter)
    monkeypatch.setattr(inference, "segment_volumes", segment_volumes)
    _image_file(tmp_path / "t1.nii.gz")
    _image_file(tmp_path / "t2.nii.gz")
    _label_file(tmp_path / "ref.nii.gz", np.ones((8, 8, 8)))
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (tmp_path / "S.csv").write_text("study_id,T1,t2,label\na,t1.nii.gz,t2.nii.gz,ref.nii.gz\nb,,t2.nii.gz,\n")
    tpm = np.zeros((6, 6, 6, 6), np.float32)
    tpm[..., 0], tpm[..., 5] = 0.6, 0.4
    nib.save(nib.Nifti1Image(tpm, np.eye(4)), str(tmp_path / "tpm.nii.gz"))
    summary = run(tmp_path / "S.csv", "segment", tmp_path / "out", workers=0, device="cpu",
                  options={"adapter": str(adapter), "ttp_steps": 3, "atlas": str(tmp_path / "tpm.nii.gz"), "atlas_weight": 2.5})
    assert summary.done == 2, summary.failed_ids
    assert [(a, b, str(d)) for a, b, d in loads] == [(str(adapter), None, "cpu")]  # one load for both studies
    assert calls == [(["T1", "T2"], ["T1", "T2"], "MODEL", 3), (["T2"], ["T2"], "MODEL", 3)]
    assert atlases == [(str(tmp_path / "tpm.nii.gz"), (6, 6, 6, 6), 2.5)] * 2
    first, second = summary.statuses
    assert first["metrics"]["dice_mean"] == 1.0 and first["metrics"]["modalities"] == "T1,T2"
    assert "dice_mean" not in second["metrics"] and second["outputs"]["segmentation"] == "segmentation.nii.gz"
    assert (tmp_path / "out" / "b" / "segmentation.nii.gz").is_file()


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

    from multimodalgen.fewshot import task as task_module

    monkeypatch.setattr(task_module, "load_task", load_task)
    monkeypatch.setattr(task_module, "apply_task", apply_task)
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
    assert summary.statuses[0]["metrics"]["labels"] == "1" and summary.statuses[0]["metrics"]["voxels_1"] == 512
    assert summary.statuses[0]["inputs"]["option:fewshot_task"]["sha256"]  # the task is part of the fingerprint


def test_fewshot_apply_with_the_real_engine(tmp_path):
    """A task saved from two painted slices of one image, applied by the batch to two other patients."""
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
    run_verb("fewshot", {"images": [str(tmp_path / "support.nii.gz")], "modalities": ["T1"],
                         "annotation": str(tmp_path / "painting.nii.gz"), "save_task": str(tmp_path / "ball.task")},
             tmp_path / "support_seg.nii.gz")
    (tmp_path / "S.csv").write_text("study_id,T1,label\nq1,q1.nii.gz,q1_ref.nii.gz\nq2,q2.nii.gz,q2_ref.nii.gz\n")
    summary = run(tmp_path / "S.csv", "fewshot-apply", tmp_path / "out", workers=0, device="cpu",
                  options={"fewshot_task": str(tmp_path / "ball.task")})
    assert summary.done == 2, summary.failed_ids
    assert all(status["metrics"]["dice_1"] > 0.8 for status in summary.statuses)
    assert all(status["outputs"]["segmentation"] == "segmentation.nii.gz" for status in summary.statuses)
