"""Shared pytest fixtures: tiny generated volumes (never real data), temporary folders, CPU only."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "MultiModalGen"))  # backend importable without pip install too
sys.path.insert(0, str(ROOT / "Testing"))  # shared test helpers (volume_factories)
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# Folders the code under test makes with `tempfile` (here, and in worker subprocesses through TMPDIR, which test
# modules copy into their environments at import) go into one folder removed when the session ends, instead of piling
# up in the system temp folder (a killed worker cannot remove its own).
TEMP_FOLDER = tempfile.mkdtemp(prefix="mmg-tests-")
os.environ["TMPDIR"] = tempfile.tempdir = TEMP_FOLDER

from volume_factories import blob_image, oblique_affine  # noqa: E402


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(TEMP_FOLDER, ignore_errors=True)


@pytest.fixture
def volume():
    from multimodalgen.volume import Volume

    return Volume(blob_image(), oblique_affine(), "T1")


@pytest.fixture
def label_volume(volume):
    from multimodalgen.volume import Volume

    labels = np.zeros(volume.shape3d, np.uint8)
    labels[4:12, 3:10, 2:8] = 1
    labels[13:18, 10:16, 5:11] = 2
    return Volume(labels, volume.affine.copy(), "LABEL")


@pytest.fixture(scope="session")
def worker():
    """One real backend worker process (CPU, one thread) shared by the tests that run verbs through it."""
    from multimodalgen.worker.process import WorkerClient, worker_command

    client = WorkerClient(worker_command(device="cpu", threads=1),
                          env=dict(os.environ, PYTHONPATH=str(ROOT / "MultiModalGen")))
    yield client
    client.close()
