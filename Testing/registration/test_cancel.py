"""Cancellation mid-run stops within a second and leaves no partial outputs."""

from __future__ import annotations

import threading
import time

import pytest
from registration_helpers import grid_affine, render


def test_cancel_from_another_thread_stops_quickly_and_writes_nothing(tmp_path):
    from multimodalgen.errors import CancelledError
    from multimodalgen.io import write_volume
    from multimodalgen.progress import Progress
    from multimodalgen.registration import register_files
    from multimodalgen.verbs import RunContext

    fixed = render((40, 44, 36), grid_affine((40, 44, 36), 2.0))
    moving = render((40, 44, 36), grid_affine((40, 44, 36), 2.0), head=1.0, blobs=-0.8)
    write_volume(fixed, tmp_path / "f.nii.gz")
    write_volume(moving, tmp_path / "m.nii.gz")
    stages = []
    progress = Progress("none", callback=lambda stage, fraction, message: stages.append((stage, time.perf_counter())))
    cancel_at = []

    def cancel_when_deformable():
        while not any(s == "deformable" for s, _ in stages):
            time.sleep(0.01)
        cancel_at.append(time.perf_counter())
        progress.cancel()

    watcher = threading.Thread(target=cancel_when_deformable, daemon=True)
    watcher.start()
    out = tmp_path / "out"
    with pytest.raises(CancelledError):
        register_files(tmp_path / "f.nii.gz", tmp_path / "m.nii.gz", out, ctx=RunContext(progress=progress))
    stopped = time.perf_counter()
    assert cancel_at and stopped - cancel_at[0] < 1.0
    assert not out.exists() or not any(out.iterdir())


def test_cancel_while_writing_leaves_no_files(tmp_path, monkeypatch):
    """A cancel arriving after some outputs were written removes them all (they live in a temporary folder)."""
    import multimodalgen.registration.outputs as outputs
    from multimodalgen.errors import CancelledError
    from multimodalgen.io import write_volume
    from multimodalgen.progress import Progress
    from multimodalgen.registration import register_files
    from multimodalgen.verbs import RunContext

    fixed = render((24, 26, 22), grid_affine((24, 26, 22), 2.5))
    write_volume(fixed, tmp_path / "f.nii.gz")
    moving = render((24, 26, 22), grid_affine((24, 26, 22), 2.5), head=1.0, blobs=-0.8)
    write_volume(moving, tmp_path / "m.nii.gz")
    progress = Progress("none")
    real_write = outputs.write_itk_transform

    def write_then_cancel(transform, path):
        out = real_write(transform, path)
        progress.cancel()  # the user presses Cancel while the outputs are being written
        return out

    monkeypatch.setattr(outputs, "write_itk_transform", write_then_cancel)
    with pytest.raises(CancelledError):
        register_files(tmp_path / "f.nii.gz", tmp_path / "m.nii.gz", tmp_path / "out", mode="affine",
                       ctx=RunContext(progress=progress))
    assert not any((tmp_path / "out").iterdir())
