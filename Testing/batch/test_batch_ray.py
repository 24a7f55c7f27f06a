"""The Ray engine on a local Ray instance (2 CPUs, started once for this module): same results as the local engine,
the corrupt study reported, resume and --force."""

from __future__ import annotations

import csv
import json

import pytest
from batch_cohort import GOOD, kill_worker_of, make_big_study_cohort, make_cohort

from multimodalgen.batch import run

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """STUDIES.csv of a fresh cohort, shared by this module's tests (each writes to its own output folder).

    (Defined here, not in a conftest.py: `from conftest import ...` in other test folders would then be ambiguous.)
    """
    return make_cohort(tmp_path_factory.mktemp("cohort"))


@pytest.fixture(scope="module", autouse=True)
def ray_session():
    from multimodalgen.batch.ray_engine import local_init_kwargs

    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, **local_init_kwargs())
    yield
    if started:
        ray.shutdown()


def _outputs(out, study):
    status = json.loads((out / study / "status.json").read_text())
    return {name: (out / study / file).read_bytes() for name, file in status["outputs"].items()}, status


def test_ray_matches_local_engine(cohort, tmp_path):
    local = run(cohort, "resample", tmp_path / "local", options={"spacing": 2.0}, workers=0)
    remote = run(cohort, "resample", tmp_path / "ray", engine="ray", options={"spacing": 2.0})
    assert remote.engine_info["engine"] == "ray" and remote.engine_info["actors"] == 2
    assert (remote.done, remote.failed) == (local.done, local.failed) == (6, 2)
    assert remote.failed_ids == local.failed_ids
    for study in GOOD:
        files_local, status_local = _outputs(tmp_path / "local", study)
        files_ray, status_ray = _outputs(tmp_path / "ray", study)
        assert files_ray == files_local  # byte-identical output volumes
        assert status_ray["metrics"] == status_local["metrics"] and status_ray["inputs"] == status_local["inputs"]
        assert status_ray["worker"]["pid"] != status_local["worker"]["pid"]  # it really ran in an actor
    rows = {r["study_id"]: r for r in csv.DictReader(open(remote.summary_csv))}
    assert rows["bad"]["state"] == "failed" and "cannot read" in rows["bad"]["error"]


def test_ray_rerun_skips_and_force_redoes(cohort, tmp_path):
    out = tmp_path / "out"
    first = run(cohort, "resample", out, engine="ray", workers=1)
    assert first.engine_info["actors"] == 1 and first.done == 6
    again = run(cohort, "resample", out, engine="ray")
    assert (again.ran, again.skipped) == (2, 6)
    forced = run(cohort, "resample", out, engine="ray", force=True)
    assert (forced.ran, forced.done, forced.failed) == (8, 6, 2)


def test_ray_actor_killed_mid_study(tmp_path):
    """The Ray worker running a study is killed, and again on the retry: that study fails, new actors go on."""
    manifest = make_big_study_cohort(tmp_path)
    watcher = kill_worker_of(tmp_path / "out", "big", kills=2)
    summary = run(manifest, "resample", tmp_path / "out", engine="ray", workers=1, options={"spacing": 0.5})
    watcher.join(1)
    assert len(watcher.killed) == 2
    assert summary.failed_ids.keys() == {"big"} and "Ray worker died" in summary.failed_ids["big"]
    assert summary.done == 2
    rerun = run(manifest, "resample", tmp_path / "out", engine="ray", workers=1, options={"spacing": 0.5})
    assert (rerun.ran, rerun.done) == (1, 3)  # only the killed study runs again
