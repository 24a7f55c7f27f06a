"""The batch runner on the local engine: outputs, failure isolation, resume, --force, CLI."""

from __future__ import annotations

import csv
import json
import multiprocessing
import os
import sys
import threading

import numpy as np
import pytest
from batch_cohort import GOOD, kill_worker_of, make_big_study_cohort, make_cohort

from multimodalgen.batch import run
from multimodalgen.errors import CancelledError, UserInputError
from multimodalgen.progress import Progress


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """STUDIES.csv of a fresh cohort, shared by this module's tests (each writes to its own output folder).

    (Defined here, not in a conftest.py: `from conftest import ...` in other test folders would then be ambiguous.)
    """
    return make_cohort(tmp_path_factory.mktemp("cohort"))


def _mtimes(out, ids):
    return {i: (out / i / "status.json").stat().st_mtime_ns for i in ids}


def test_process_pool_outputs_failures_and_summary(cohort, tmp_path):
    events = []
    progress = Progress(callback=lambda stage, fraction, message: events.append((stage, fraction, message)))
    summary = run(cohort, "resample", tmp_path / "out", options={"spacing": 2.0}, workers=2, progress=progress)
    assert (summary.total, summary.ran, summary.done, summary.failed) == (8, 8, 6, 2)
    assert summary.engine_info["workers"] == 2 and summary.engine_info["devices"] == ["cpu"]
    assert set(summary.failed_ids) == {"bad", "missing"}
    assert "cannot read" in summary.failed_ids["bad"]
    assert "does not exist" in summary.failed_ids["missing"] and "line 9" in summary.failed_ids["missing"]

    from multimodalgen.io import read_label, read_volume
    for study in GOOD:
        status = json.loads((tmp_path / "out" / study / "status.json").read_text())
        assert status["state"] == "done" and status["error"] is None
        assert len(status["inputs"]["image"]["sha256"]) == 64
        assert status["timings"]["seconds"] >= status["timings"]["task_seconds"] > 0
        image = read_volume(tmp_path / "out" / study / status["outputs"]["image"])
        label = read_label(tmp_path / "out" / study / status["outputs"]["label"])
        assert np.allclose(image.spacing, 2.0) and np.allclose(label.spacing, 2.0)
        assert image.shape3d == (8, 9, 8)  # field of view 16 x 16.8 x 15 mm kept
        source = read_label(cohort.parent / study / "lab.nii.gz")
        assert set(np.unique(label.array)) == set(np.unique(source.array))  # nearest-neighbour: no new labels
        assert abs(float(image.array.mean()) - status["metrics"]["image_mean"]) < 1e-4
    bad = json.loads((tmp_path / "out" / "bad" / "status.json").read_text())
    assert bad["state"] == "failed" and bad["error_type"] == "UserInputError" and "traceback" not in bad

    rows = list(csv.DictReader(open(summary.summary_csv)))
    assert [r["study_id"] for r in rows] == GOOD + ["bad", "missing"]
    assert {r["study_id"]: r["state"] for r in rows}["bad"] == "failed"
    assert rows[0]["output_image"] == "s0/image.nii.gz" and float(rows[0]["seconds"]) > 0
    assert events[0] == ("batch", 0.0, "8 to run, 0 up to date") and events[-1] == ("batch", 1.0, "8/8 2 failed ETA 0:00")


def test_rerun_skips_done_and_force_redoes(cohort, tmp_path):
    out = tmp_path / "out"
    run(cohort, "resample", out, workers=0)
    before = _mtimes(out, GOOD)
    again = run(cohort, "resample", out, workers=0)
    assert (again.ran, again.skipped, again.failed) == (2, 6, 2)  # only the failed studies run again
    assert _mtimes(out, GOOD) == before
    rows = {r["study_id"]: r for r in csv.DictReader(open(again.summary_csv))}
    assert rows["s3"]["this_run"] == "skipped" and rows["s3"]["state"] == "done" and rows["bad"]["this_run"] == "ran"
    forced = run(cohort, "resample", out, workers=0, force=True)
    assert (forced.ran, forced.skipped) == (8, 0)
    assert all(_mtimes(out, GOOD)[i] != before[i] for i in GOOD)


def test_changed_options_or_inputs_rerun_only_what_changed(tmp_path):

    manifest = make_cohort(tmp_path / "cohort", n=2)
    out = tmp_path / "out"
    run(manifest, "resample", out, workers=0)
    assert run(manifest, "resample", out, workers=0, options={"spacing": 1.5}).ran == 4  # options changed
    image = tmp_path / "cohort" / "s1" / "img.nii.gz"
    image.write_bytes((tmp_path / "cohort" / "s0" / "img.nii.gz").read_bytes())  # new content, same name
    summary = run(manifest, "resample", out, workers=0, options={"spacing": 1.5})
    assert {s["study_id"] for s in summary.statuses if s["timings"]["started"]} >= {"s1"}
    assert summary.ran == 3 and summary.skipped == 1  # s1 plus the two failed studies; s0 untouched


def test_cancel_stops_the_batch(cohort, tmp_path):
    cancel = threading.Event()
    progress = Progress(cancel_event=cancel)
    seen = []

    def on_study(status):
        seen.append(status["study_id"])
        cancel.set()

    with pytest.raises(CancelledError):
        run(cohort, "resample", tmp_path / "out", workers=0, progress=progress, on_study=on_study)
    rows = list(csv.DictReader(open(tmp_path / "out" / "summary.csv")))
    assert sum(r["this_run"] == "ran" for r in rows) == len(seen) < 8
    assert any(r["this_run"] == "not run" for r in rows)


def test_bad_requests_raise_before_running(cohort, tmp_path):
    with pytest.raises(UserInputError, match="unknown batch task"):
        run(cohort, "warp", tmp_path)
    with pytest.raises(UserInputError, match="unknown batch engine"):
        run(cohort, "resample", tmp_path, engine="slurm")
    with pytest.raises(UserInputError, match="lacks column"):
        run(cohort, "register", tmp_path)
    with pytest.raises(UserInputError, match="--address only applies"):
        run(cohort, "resample", tmp_path / "o", address="auto", workers=0)


def test_a_failing_study_fails_alone_with_a_clear_message(tmp_path):
    for name in ("f.nii.gz", "m.nii.gz"):
        (tmp_path / name).write_bytes(b"x")  # not images: the registration verb refuses them
    (tmp_path / "S.csv").write_text("study_id,fixed,moving\na,f.nii.gz,m.nii.gz\nb,f.nii.gz,m.nii.gz\n")
    summary = run(tmp_path / "S.csv", "register", tmp_path / "out", workers=0, device="cpu")
    assert summary.failed == 2 and all("f.nii.gz" in e for e in summary.failed_ids.values())
    assert summary.statuses[0]["error_type"] == "UserInputError"


def test_cli_json_events_and_exit_codes(cohort, tmp_path, capsys):
    from multimodalgen.cli.main import main

    code = main(["--progress", "json", "batch", "--manifest", str(cohort), "--task", "resample", "--out-dir",
                 str(tmp_path / "out"), "--workers", "0", "--spacing", "3"])
    assert code == 1  # some studies failed
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    studies = {e["study_id"]: e["state"] for e in lines if e["event"] == "study"}
    assert studies == {**{i: "done" for i in GOOD}, "bad": "failed", "missing": "failed"}
    result = lines[-1]
    assert result["event"] == "result" and result["done"] == 6 and result["failed"] == 2
    assert any(e["event"] == "progress" and "ETA" in e["message"] for e in lines)
    code = main(["batch", "--manifest", str(cohort), "--task", "resample", "--out-dir", str(tmp_path / "out"),
                 "--workers", "0", "--preset", "fast"])
    assert code == 2 and "do not apply" in capsys.readouterr().err


def crash_on_s2(inputs, out_dir, options, ctx):
    """A task that kills its worker process on study s2 (stands in for a segfault or an out-of-memory kill)."""
    from multimodalgen.batch.verb_study import run_study_verb

    if out_dir.name == "s2":
        os._exit(7)
    from multimodalgen.batch.tasks import get_task

    return run_study_verb(get_task("resample"), inputs, out_dir, options, ctx)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses fork to hand the test task to the workers")
def test_a_dying_worker_fails_only_its_study(cohort, tmp_path, monkeypatch):
    from multimodalgen.batch import local_engine
    fork = multiprocessing.get_context("fork")  # children inherit the patched task registry
    monkeypatch.setattr(local_engine.multiprocessing, "get_context", lambda method: fork)
    from multimodalgen.batch import study

    monkeypatch.setattr(study, "load_task_function", lambda spec: crash_on_s2)
    summary = run(cohort, "resample", tmp_path / "out", workers=2)
    assert (summary.done, summary.failed) == (5, 3)
    assert "worker process died while running this study, twice" in summary.failed_ids["s2"]
    status = json.loads((tmp_path / "out" / "s2" / "status.json").read_text())
    assert status["state"] == "failed" and status["error_type"] == "WorkerDied"


def test_a_killed_worker_process_is_retried_alone(tmp_path):
    """The pool process running a study is SIGKILLed once (as by the OOM killer): the pool is rebuilt, that study
    is retried alone and succeeds, the others finish."""
    manifest = make_big_study_cohort(tmp_path)
    watcher = kill_worker_of(tmp_path / "out", "big", kills=1)
    summary = run(manifest, "resample", tmp_path / "out", workers=2, options={"spacing": 0.5})
    watcher.join(1)
    assert len(watcher.killed) == 1 and summary.statuses[1]["worker"]["pid"] != watcher.killed[0]
    assert (summary.done, summary.failed) == (3, 0)
