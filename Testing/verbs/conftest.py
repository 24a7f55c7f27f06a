"""Fixtures of the four-doors tests: one HTTP server for the session and tiny inputs (the worker process is the
session fixture `worker` of Testing/conftest.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT / "Testing" / "slicer"))  # slicer_helpers.start_server

from blob_images import blobs as _blobs  # noqa: E402


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    from slicer_helpers import start_server

    srv = start_server(tmp_path_factory.mktemp("server"), "--max-upload-mb", "20", "--threads", "1")
    yield srv
    srv.proc.terminate()
    srv.proc.wait(timeout=10)


@pytest.fixture(scope="session")
def inputs(tmp_path_factory):
    """Tiny files every verb reads: two images of a pair with labels, a painting, a saved few-shot task, cases."""
    from multimodalgen.io import write_label, write_volume
    from multimodalgen.verbs import run_verb
    from multimodalgen.volume import Volume

    folder = tmp_path_factory.mktemp("inputs")
    shape, affine = (24, 24, 16), np.diag([1.5, 1.5, 2.0, 1.0])
    fixed = _blobs(shape, [(1.0, (12, 12, 8)), (0.5, (7, 15, 7))])
    moving = _blobs(shape, [(1.0, (14, 11, 8)), (0.5, (9, 14, 7))])
    paths = {"fixed": folder / "fixed.nii.gz", "moving": folder / "moving.nii.gz",
             "fixed_labels": folder / "fixed_labels.nii.gz", "moving_labels": folder / "moving_labels.nii.gz",
             "painting": folder / "painting.nii.gz"}
    write_volume(Volume(fixed, affine, "T1"), paths["fixed"])
    write_volume(Volume(moving, affine, "T2"), paths["moving"])
    write_label(Volume((fixed > 500).astype(np.uint8), affine, "LABEL"), paths["fixed_labels"])
    write_label(Volume((moving > 500).astype(np.uint8), affine, "LABEL"), paths["moving_labels"])
    painting = np.zeros(shape, np.uint8)
    painting[:, :, [5, 8, 11]] = (fixed > 500)[:, :, [5, 8, 11]]
    write_label(Volume(painting, affine, "LABEL"), paths["painting"])
    paths["task"] = folder / "blob.task"
    run_verb("fewshot", {"images": [str(paths["fixed"])], "modalities": ["T1"], "annotation": str(paths["painting"]),
                         "save_task": str(paths["task"])}, folder / "task_seg.nii.gz")
    registered = run_verb("register", {"fixed": str(paths["fixed"]), "moving": str(paths["moving"]), "mode": "affine",
                                       "overlay": False}, folder / "registered")
    paths["transform"] = registered.outputs["transform"]
    with open(folder / "CASES.csv", "w") as handle:
        handle.write("T1,label\n")
        for n in range(2):
            handle.write(f"{paths['fixed']},{paths['fixed_labels']}\n")
    paths["cases_csv"] = folder / "CASES.csv"
    return {k: str(v) for k, v in paths.items()}
