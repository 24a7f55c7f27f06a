"""The command line as a program ends without interpreter teardown (`cli.main._exit_now`): its output must still be
complete and its exit code kept."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]


def _run(*args):
    return subprocess.run([sys.executable, "-m", "multimodalgen.cli.main", *args], capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=str(ROOT / "MultiModalGen")), timeout=300)


def test_program_exit_keeps_output_and_exit_codes(tmp_path):
    from multimodalgen.io import write_volume
    from multimodalgen.volume import Volume

    image = tmp_path / "in.nii.gz"
    write_volume(Volume(np.random.default_rng(0).random((8, 7, 6)).astype(np.float32), np.eye(4), "T1"), image)
    done = _run("info", "--json", str(image))  # stdout is a pipe: block-buffered, flushed before the exit
    assert done.returncode == 0, done.stderr
    assert done.stdout.rstrip().endswith("}") and '"shape"' in done.stdout
    missing = _run("info", str(tmp_path / "missing.nii.gz"))
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1 and "not found" in missing.stderr
