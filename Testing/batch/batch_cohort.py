"""A tiny generated cohort for the batch tests: 6 good studies, 1 corrupt image, 1 missing file.

(A module of its own, not conftest.py: `import conftest` is ambiguous when several test folders have one.)
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np

GOOD = [f"s{i}" for i in range(6)]


def make_cohort(root: Path, n: int = 6) -> Path:
    """Write `n` studies (16x14x6 image, spacing 1 x 1.2 x 2.5 mm, and a label map), a study whose image is a
    truncated gzip ("bad"), and a study whose image does not exist ("missing"); returns STUDIES.csv."""
    from multimodalgen.io import write_label, write_volume
    from multimodalgen.volume import Volume

    rng = np.random.default_rng(0)
    rows = ["study_id,image,label"]
    for i in range(n):
        affine = np.diag([1.0, 1.2, 2.5, 1.0])
        affine[:3, 3] = [-5.0, 3.0, float(i)]
        image = rng.normal(100, 20, (16, 14, 6)).astype(np.float32)
        label = np.zeros((16, 14, 6), np.uint8)
        label[4:10, 3:9, 1:4] = 1 + i % 2
        write_volume(Volume(image, affine, "T1"), root / f"s{i}" / "img.nii.gz")
        write_label(Volume(label, affine, "LABEL"), root / f"s{i}" / "lab.nii.gz")
        rows.append(f"s{i},s{i}/img.nii.gz,s{i}/lab.nii.gz")
    (root / "bad").mkdir()
    good = (root / "s0" / "img.nii.gz").read_bytes()
    (root / "bad" / "img.nii.gz").write_bytes(good[: len(good) // 2])  # truncated: a corrupt download
    rows.append("bad,bad/img.nii.gz,s0/lab.nii.gz")
    rows.append("missing,nope/img.nii.gz,s0/lab.nii.gz")
    manifest = root / "STUDIES.csv"
    manifest.write_text("\n".join(rows) + "\n")
    return manifest


def make_big_study_cohort(root: Path) -> Path:
    """Two tiny studies and one big one ("big": 128^3 voxels, resampled to 0.5 mm it takes seconds): a window
    in which a test can kill the worker running it."""
    from multimodalgen.io import write_volume
    from multimodalgen.volume import Volume

    rng = np.random.default_rng(1)
    rows = ["study_id,image"]
    for name, size in (("small1", 8), ("big", 128), ("small2", 8)):
        write_volume(Volume(rng.normal(0, 1, (size,) * 3).astype(np.float32), np.eye(4), "T1"), root / f"{name}.nii.gz")
        rows.append(f"{name},{name}.nii.gz")
    manifest = root / "BIG.csv"
    manifest.write_text("\n".join(rows) + "\n")
    return manifest


def kill_worker_of(out_dir: Path, study_id: str, kills: int = 1, timeout: float = 90.0) -> threading.Thread:
    """Start a thread that SIGKILLs the process running `study_id` whenever its status.json says "running" (each
    new worker once, `kills` times in all), as the out-of-memory killer would. `thread.killed` lists the pids."""
    killed: list[int] = []

    def watch():
        deadline = time.monotonic() + timeout
        while len(killed) < kills and time.monotonic() < deadline:
            try:
                status = json.loads((out_dir / study_id / "status.json").read_text())
            except (OSError, ValueError):
                status = {}
            pid = (status.get("worker") or {}).get("pid")
            if status.get("state") == "running" and pid not in killed:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            time.sleep(0.01)

    thread = threading.Thread(target=watch, daemon=True)
    thread.killed = killed
    thread.start()
    return thread
