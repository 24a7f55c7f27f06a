"""Verbs through a real worker process on tiny synthetic volumes: the file contract the Slicer module relies on
(registration outputs in the bridge's convention, warm few-shot updates). A failing engine fails the test."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from MultiModalGenLib import bridge
from multimodalgen.io import read_label, read_volume, write_label, write_volume
from multimodalgen.volume import Volume

ROOT = Path(__file__).resolve().parents[2]


def ref(path) -> dict:
    return {"file": str(path)}


def run_ok(worker, task, params, timeout=300):
    job = worker.run(task, params, timeout=timeout)
    assert job.state == "done", f"{job.error_kind}: {job.error_message}\n{job.error_detail}"
    return job


def blobs(shape, centres, scales=(1.0, 1.5, 0.7)):
    grid = np.indices(shape).astype(np.float32)
    out = np.zeros(shape, np.float32)
    for weight, centre in centres:
        d2 = sum(((grid[a] - centre[a]) ** 2) * scales[a] for a in range(3))
        out += weight * 1000 * np.exp(-d2 / 30.0)
    return out


def test_deformable_registration_outputs_follow_the_bridge_convention(worker, tmp_path):
    shape, affine = (24, 24, 20), np.diag([1.5, 1.5, 2.0, 1.0])
    fixed = Volume(blobs(shape, [(1.0, (12, 12, 10)), (0.5, (7, 15, 9))]), affine, "T1")
    moving = Volume(blobs(shape, [(1.0, (14, 11, 10)), (0.5, (9, 14, 9))]), affine, "T2")
    labels = Volume((moving.array > 500).astype(np.uint8), affine, "LABEL")
    write_volume(fixed, tmp_path / "f.nii.gz")
    write_volume(moving, tmp_path / "m.nii.gz")
    write_label(labels, tmp_path / "l.nii.gz")
    job = run_ok(worker, "register", {"fixed": ref(tmp_path / "f.nii.gz"), "moving": ref(tmp_path / "m.nii.gz"),
                                           "moving_labels": ref(tmp_path / "l.nii.gz"), "mode": "deformable",
                                           "preset": "fast", "resample": True, "output_dir": str(tmp_path / "out"),
                                           "outputs": "default,displacement"})
    out = job.outputs
    assert Path(out["transform"]["file"]).is_file() and out["warped_labels"] is not None
    field = read_volume(out["displacement"]["file"])
    assert field.array.shape == (3, *shape) and np.allclose(field.affine, affine)
    field = field.with_array(field.array * np.array([-1.0, -1.0, 1.0], np.float32)[:, None, None, None])  # LPS->RAS
    # The field is fixed -> moving in RAS mm: the fixed blob centre maps onto the moving blob centre (+3, -1.5, 0)
    centre = (affine @ [12, 12, 10, 1])[:3]
    shift = bridge.evaluateField(field.array, field.affine, centre[None])[0]
    assert np.allclose(shift, [3.0, -1.5, 0.0], atol=0.75), shift
    # ... and sampling the moving image at x + u(x) (what Slicer's grid transform does) reproduces the fixed image
    warped = read_volume(out["warped"]["file"]).array
    after = np.corrcoef(warped.ravel(), fixed.array.ravel())[0, 1]
    before = np.corrcoef(moving.array.ravel(), fixed.array.ravel())[0, 1]
    assert after > 0.97 and after > before + 0.04, (before, after)


def test_fewshot_from_three_painted_slices_then_warm_update(worker, tmp_path):
    shape, affine = (40, 40, 30), np.diag([1.2, 1.2, 2.0, 1.0])
    g = np.indices(shape).astype(np.float32)
    truth = (((g[0] - 20) / 9) ** 2 + ((g[1] - 19) / 7) ** 2 + ((g[2] - 15) / 8) ** 2) < 1
    image = 100 + 300 * truth + np.random.default_rng(0).normal(0, 20, shape)
    painted = np.zeros(shape, np.uint8)
    for k in (10, 15, 20):
        painted[:, :, k] = truth[:, :, k]
    write_volume(Volume(image.astype(np.float32), affine, "T1"), tmp_path / "img.nii.gz")
    write_label(Volume(painted, affine, "LABEL"), tmp_path / "ann.nii.gz")
    params = {"images": [ref(tmp_path / "img.nii.gz")], "annotation": ref(tmp_path / "ann.nii.gz"),
              "image_id": "node1:42"}
    timings, results = [], []
    for n in range(2):
        start = time.monotonic()
        job = run_ok(worker, "fewshot", dict(params, output_dir=str(tmp_path / f"o{n}")))
        timings.append(time.monotonic() - start)
        results.append(job.outputs)
    assert [r["warm"] for r in results] == [False, True]
    assert timings[1] < timings[0]
    predicted = read_label(results[1]["segmentation"]["file"]).array > 0
    dice = 2 * (predicted & truth).sum() / (predicted.sum() + truth.sum())
    assert dice > 0.8, dice
    merged = bridge.mergePreservingAnnotations(predicted.astype(np.uint8), painted)
    assert np.array_equal(merged[:, :, [10, 15, 20]], painted[:, :, [10, 15, 20]])


def test_personalized_segment_task(worker, tmp_path):
    shape, affine = (32, 32, 24), np.diag([1.5, 1.5, 1.5, 1.0])
    write_volume(Volume(blobs(shape, [(1.0, (16, 16, 12))]), affine, "T1"), tmp_path / "t1.nii.gz")
    job = run_ok(worker, "segment", {"images": {"T1": ref(tmp_path / "t1.nii.gz")},
                                          "output_dir": str(tmp_path / "o")})
    label = read_label(job.outputs["segmentation"]["file"])
    assert label.shape3d == shape and all(s["label"] > 0 and s["name"] for s in job.outputs["segments"])


def test_personalized_segment_task_refuses_an_image_as_its_atlas(worker, tmp_path):
    shape, affine = (32, 32, 24), np.diag([1.5, 1.5, 1.5, 1.0])
    write_volume(Volume(blobs(shape, [(1.0, (16, 16, 12))]), affine, "T1"), tmp_path / "t1.nii.gz")
    job = worker.run("segment", {"images": {"T1": ref(tmp_path / "t1.nii.gz")}, "atlas": ref(tmp_path / "t1.nii.gz"),
                                 "output_dir": str(tmp_path / "o")}, timeout=300)
    assert job.state == "failed" and job.error_kind == "user_input" and "not a tissue atlas" in job.error_message
    assert not (tmp_path / "o" / "segmentation.nii.gz").exists()


@pytest.mark.slow
def test_fewshot_from_a_labelled_support_volume(worker, tmp_path):
    shape, affine = (36, 36, 24), np.diag([1.5, 1.5, 2.0, 1.0])
    g = np.indices(shape).astype(np.float32)

    def case(centre):
        truth = (((g[0] - centre[0]) / 8) ** 2 + ((g[1] - centre[1]) / 6) ** 2 + ((g[2] - centre[2]) / 5) ** 2) < 1
        image = 100 + 300 * truth + np.random.default_rng(int(centre[0])).normal(0, 15, shape)
        return Volume(image.astype(np.float32), affine, "T1"), truth

    support, support_truth = case((18, 18, 12))
    query, query_truth = case((20, 17, 12))
    write_volume(support, tmp_path / "s.nii.gz")
    write_label(Volume(support_truth.astype(np.uint8), affine, "LABEL"), tmp_path / "sl.nii.gz")
    write_volume(query, tmp_path / "q.nii.gz")
    job = run_ok(worker, "fewshot", {"support_images": [[ref(tmp_path / "s.nii.gz")]],
                                          "support_labels": [ref(tmp_path / "sl.nii.gz")],
                                          "images": [ref(tmp_path / "q.nii.gz")], "output_dir": str(tmp_path / "o")})
    predicted = read_label(job.outputs["segmentation"]["file"]).array > 0
    dice = 2 * (predicted & query_truth).sum() / (predicted.sum() + query_truth.sum())
    assert dice > 0.7, dice


def test_encoder_features_task(worker, tmp_path):
    write_volume(Volume(blobs((24, 24, 16), [(1.0, (12, 12, 8))]), np.eye(4), "T1"), tmp_path / "i.nii.gz")
    job = run_ok(worker, "features", {"image": ref(tmp_path / "i.nii.gz"), "modality": "T1",
                                           "output_dir": str(tmp_path / "o")})
    features = read_volume(job.outputs["features"]["file"])
    assert features.array.shape == (16, 24, 24, 16) and job.outputs["channels"] == 16
