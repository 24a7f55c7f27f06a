"""Four doors, one verb: the CLI, the worker, batch and the HTTP server give the same output files (names and
contents) for the same inputs, because all of them run the verb's one driver through `multimodalgen.verbs`.

Images are compared voxel by voxel (labels exactly, floats within 1e-4 relative) with their grid, JSON reports
without their timings and input paths, ITK transforms by the points they map, weights tensor by tensor.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from doors import batch_door, cli_door, server_door, worker_door

#: Paths and clocks differ by door; a weights file's sha256 differs with float rounding (weights are compared
#: tensor by tensor instead).
VOLATILE = {"timings_s", "timings", "inputs", "cases_csv", "seconds", "created", "created_utc", "elapsed_s", "source",
            "sha256", "io_share", "bytes_written"}


def _same_json(a, b, where=""):
    if isinstance(a, dict) and isinstance(b, dict):
        keys = set(a) - VOLATILE
        assert keys == set(b) - VOLATILE, f"{where}: keys {sorted(keys ^ (set(b) - VOLATILE))}"
        for k in keys:
            _same_json(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list) and isinstance(b, list):
        assert len(a) == len(b), where
        for n, (x, y) in enumerate(zip(a, b)):
            _same_json(x, y, f"{where}[{n}]")
    elif isinstance(a, float) or isinstance(b, float):
        assert a == pytest.approx(b, rel=1e-4, abs=1e-6), where
    else:
        assert a == b, where


def same_file(a: Path, b: Path) -> None:
    """Assert that two outputs of the same name hold the same content (see the module docstring)."""
    name = a.name.lower()
    if name.endswith((".nii.gz", ".nii", ".nrrd", ".mha")):
        import SimpleITK as sitk

        ia, ib = sitk.ReadImage(str(a)), sitk.ReadImage(str(b))
        assert ia.GetSize() == ib.GetSize() and np.allclose(ia.GetDirection(), ib.GetDirection())
        assert np.allclose(ia.GetOrigin(), ib.GetOrigin()) and np.allclose(ia.GetSpacing(), ib.GetSpacing())
        xa, xb = sitk.GetArrayFromImage(ia), sitk.GetArrayFromImage(ib)
        assert xa.dtype == xb.dtype, (a, xa.dtype, xb.dtype)
        if np.issubdtype(xa.dtype, np.integer):
            assert np.array_equal(xa, xb), a
        else:
            assert np.allclose(xa, xb, rtol=1e-4, atol=1e-4 * float(np.abs(xa).max() or 1)), a
    elif name.endswith(".json"):
        _same_json(json.loads(a.read_text()), json.loads(b.read_text()), a.name)
    elif name.endswith(".h5"):
        import SimpleITK as sitk

        ta, tb = sitk.ReadTransform(str(a)), sitk.ReadTransform(str(b))
        for point in ([0.0, 0.0, 0.0], [-10.0, 5.0, 3.0], [12.0, -7.0, 20.0], [30.0, 30.0, 10.0]):
            assert np.allclose(ta.TransformPoint(point), tb.TransformPoint(point), atol=1e-3), a
    elif name.endswith(".safetensors"):
        from safetensors.numpy import load_file

        wa, wb = load_file(str(a)), load_file(str(b))
        assert set(wa) == set(wb)
        for key in wa:
            assert np.allclose(wa[key].astype(np.float32), wb[key].astype(np.float32), rtol=1e-3, atol=1e-4), key
    elif name.endswith(".png"):
        assert a.stat().st_size > 0 and b.stat().st_size > 0
    else:
        assert a.read_bytes() == b.read_bytes(), a


def compare_doors(results: dict[str, dict[str, Path]]) -> None:
    reference_door, reference = next(iter(results.items()))
    assert reference, f"{reference_door} wrote nothing"
    for door, files in results.items():
        assert sorted(files) == sorted(reference), f"{door} wrote {sorted(files)}, {reference_door} {sorted(reference)}"
        for name in reference:
            same_file(reference[name], files[name])


#: verb case -> (verb params, CLI argv builder (folder -> argv), batch (task, columns, options) or None)
def cases(p):
    return {
        "convert": ({"input": p["moving"], "spacing": 3.0},
                    lambda d: ["convert", p["moving"], str(d / "converted.nii.gz"), "--spacing", "3"],
                    ("convert", {"input": p["moving"]}, {"spacing": 3.0})),
        "features": ({"image": p["fixed"], "modality": "T1"},
                     lambda d: ["features", "--image", p["fixed"], "--modality", "T1", "--out",
                                str(d / "features.nii.gz")],
                     ("features", {"image": p["fixed"]}, {"modality": "T1"})),
        "register": ({"fixed": p["fixed"], "moving": p["moving"], "moving_labels": p["moving_labels"],
                      "fixed_labels": p["fixed_labels"], "mode": "deformable", "preset": "fast"},
                     lambda d: ["register", "--fixed", p["fixed"], "--moving", p["moving"], "--moving-labels",
                                p["moving_labels"], "--fixed-labels", p["fixed_labels"], "--out-dir", str(d)],
                     ("register", {"fixed": p["fixed"], "moving": p["moving"], "moving_labels": p["moving_labels"],
                                   "fixed_labels": p["fixed_labels"]}, {"mode": "deformable", "preset": "fast"})),
        "apply": ({"moving": p["moving_labels"], "transform": p["transform"], "reference": p["fixed"], "labels": True,
                   "fill": 0.0},
                  lambda d: ["apply", "--transform", p["transform"], "--moving", p["moving_labels"], "--reference",
                             p["fixed"], "--labels", "--out", str(d / "warped.nii.gz")], None),
        "resample": ({"images": {"t1": p["fixed"], "seg_label": p["fixed_labels"]}, "spacing": 2.0}, None,
                     ("resample", {"t1": p["fixed"], "seg_label": p["fixed_labels"]}, {"spacing": 2.0})),
        "segment": ({"images": {"T1": p["fixed"]}},
                    lambda d: ["segment", "--image", f"T1={p['fixed']}", "--out", str(d / "segmentation.nii.gz")],
                    ("segment", {"T1": p["fixed"]}, {})),
        "fewshot-painted": ({"images": [p["fixed"]], "modalities": ["T1"], "annotation": p["painting"]},
                            lambda d: ["fewshot", "--image", f"T1={p['fixed']}", "--annotations", p["painting"],
                                       "--out", str(d / "segmentation.nii.gz")], None),
        "fewshot-apply": ({"images": [p["moving"]], "modalities": ["T1"], "apply_task": p["task"]},
                          lambda d: ["fewshot", "--image", f"T1={p['moving']}", "--apply-task", p["task"], "--out",
                                     str(d / "segmentation.nii.gz")],
                          ("fewshot-apply", {"T1": p["moving"]}, {"fewshot_task": p["task"]})),
        "finetune": ({"cases": [{"images": {"T1": p["fixed"]}, "label": p["fixed_labels"],
                                "segments": [{"label": 1, "name": "blob"}]}] * 2, "steps": 2,
                      "crop": 32, "val_fraction": 0.0},
                     lambda d: ["finetune", "--cases", p["cases_csv"], "--out", str(d / "adapter"), "--steps", "2",
                                "--crop", "32", "--val-fraction", "0"], None),
    }


CASES = ["convert", "features", "register", "apply", "resample", "segment", "fewshot-painted", "fewshot-apply",
         "finetune"]

#: Doors a case does not have, and why (every other case goes through all four).
NO_DOOR = {"resample": {"cli": "a cohort preprocessing step; one image is `convert --spacing` on the command line"},
           "apply": {"batch": "a batch registers (and so warps) each study; apply reuses one saved transform"},
           "fewshot-painted": {"batch": "a painting belongs to one interactive image; batch applies saved tasks"},
           "fewshot-apply": {"server": "a saved task is a folder; uploads are single files"},
           "finetune": {"batch": "one adapter from all cases, not one per study"}}


@pytest.mark.parametrize("case", CASES)
def test_every_door_writes_the_same_outputs(case, inputs, worker, server, tmp_path):
    params, argv, batch = cases(inputs)[case]
    verb = "fewshot" if case.startswith("fewshot") else case
    assert (argv is None) == ("cli" in NO_DOOR.get(case, {}))
    results = {} if argv is None else {"cli": cli_door(argv(tmp_path / "cli"), tmp_path / "cli")}
    results["worker"] = worker_door(worker, verb, params, tmp_path / "worker")
    if "server" not in NO_DOOR.get(case, {}):
        results["server"] = server_door(server, verb, params, tmp_path / "server")
    assert (batch is None) == ("batch" in NO_DOOR.get(case, {}))
    if batch is not None:
        task, columns, options = batch
        results["batch"] = batch_door(task, columns, options, tmp_path / "batch")
    compare_doors(results)
