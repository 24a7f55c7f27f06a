"""Slicer-side clients outside Slicer: LocalBackend/TaskRunner with a real worker, RemoteBackend with a real server."""

from __future__ import annotations

import time

import pytest
import slicer_standins as sx

from MultiModalGenLib.parameters import Settings, loadSettings, saveSettings
from MultiModalGenLib.runner import TaskFailed, TaskRunner
from MultiModalGenLib.worker_client import BackendError, HttpApi, LocalBackend, RemoteBackend, makeBackend
from multimodalgen.errors import UserInputError


@pytest.fixture()
def runner():
    r = TaskRunner(settingsStore=sx.SettingsStore())
    r.updateSettings(device="cpu")
    yield r
    r.shutdown()


def test_settings_round_trip_and_validation(tmp_path):
    store = sx.SettingsStore()
    saveSettings(store, Settings(device="cpu", backend="remote", serverUrl="http://gpu:8765", serverToken="t" * 10,
                                 dataFolder=str(tmp_path), threads=2))
    loaded = loadSettings(store)
    assert (loaded.device, loaded.backend, loaded.threads, loaded.adaptersFolder) == ("cpu", "remote", 2,
                                                                                     tmp_path / "adapters")
    with pytest.raises(UserInputError, match="scheme"):
        Settings(backend="remote", serverUrl="gpu:8765")
    store["MultiModalGen/device"] = "tpu"
    assert loadSettings(store).device == "auto"  # corrupted settings fall back to defaults
    assert isinstance(makeBackend(Settings(device="cpu")), LocalBackend)


def test_runner_blocking_and_async_with_results_on_caller_thread(runner):
    outputs = runner.run("selftest.sleep", {"seconds": 0.2, "steps": 2})
    assert outputs["slept_s"] >= 0.2
    finished, events = [], []
    runner.eventCallback = lambda job, m: events.append(m["type"])
    job = runner.run("selftest.sleep", {"seconds": 0.2, "steps": 2}, importResult=lambda o: o["slept_s"] * 10,
                     wait=False, onFinished=lambda result, error: finished.append((result, error)))
    assert not job.done and runner.isBusy()
    with pytest.raises(UserInputError, match="another MultiModalGen task"):
        runner.run("selftest.sleep", {})
    deadline = time.monotonic() + 30
    while not finished and time.monotonic() < deadline:
        runner.poll()
        time.sleep(0.02)
    assert finished[0][1] is None and finished[0][0] >= 2.0
    assert "progress" in events and events[-1] == "result" and not runner.isBusy()


def test_runner_errors_cancel_and_cleanup(runner, tmp_path):
    with pytest.raises(UserInputError, match="selftest failure"):
        runner.run("selftest.fail", {"kind": "user_input"})
    with pytest.raises(TaskFailed, match="selftest internal failure"):
        runner.run("selftest.fail", {"kind": "internal"})
    folder = tmp_path / "exchange"
    folder.mkdir()
    errors = []
    runner.run("selftest.sleep", {"seconds": 60, "interruptible": False}, wait=False, folder=folder,
               onFinished=lambda r, e: errors.append(e))
    time.sleep(0.5)
    seconds = runner.cancel()
    assert seconds < 1.0 and errors[0]["kind"] == "cancelled" and not folder.exists()
    failed = runner.run("selftest.sleep", {"seconds": 0.05}, importResult=lambda o: 1 / 0, wait=False,
                        onFinished=lambda r, e: errors.append(e))
    runner.backend().wait(failed)
    runner.poll()
    assert errors[-1]["kind"] == "internal" and "division" in errors[-1]["message"]


def test_runner_reports_dead_worker_then_recovers(runner):
    with pytest.raises(TaskFailed, match="stopped unexpectedly") as info:
        runner.run("selftest.fail", {"kind": "exit"})
    assert info.value.kind == "worker_died"
    assert runner.run("selftest.sleep", {"seconds": 0.01})["slept_s"] >= 0


def test_remote_backend_against_real_server(server, tmp_path):
    source = tmp_path / "in put.nii.gz"
    source.write_bytes(b"remote-bytes")
    backend = RemoteBackend(server.url, server.token, downloadDir=str(tmp_path / "dl"), pollInterval=0.05)
    assert backend.checkVersion()["protocol"] == 1
    events = []
    job = backend.submit("selftest.copy", {"input": {"file": str(source)}}, lambda j, m: events.append(m))
    backend.wait(job, timeout=60)
    assert job.state == "done", job.error_message
    local = job.outputs["output"]["file"]
    assert open(local, "rb").read() == b"remote-bytes" and local.startswith(str(tmp_path / "dl"))
    assert [m["type"] for m in events][0] == "progress" and events[-1]["type"] == "result"
    job = backend.submit("selftest.sleep", {"seconds": 60, "interruptible": False})
    time.sleep(1.0)
    assert backend.cancel(job) < 1.0 and job.state == "cancelled"
    backend.close()


def test_remote_backend_interactive_session_reopens_after_expiry(server):
    backend = RemoteBackend(server.url, server.token, pollInterval=0.05, interactive=True)
    first = backend.wait(backend.submit("selftest.cache", {"image_id": "x"}), timeout=60)
    second = backend.wait(backend.submit("selftest.cache", {"image_id": "x"}), timeout=60)
    assert (first.outputs["warm"], second.outputs["warm"]) == (False, True)
    old = backend.sessionId
    time.sleep(3.0)  # the fixture's session ttl is 1.5 s
    third = backend.wait(backend.submit("selftest.cache", {"image_id": "x"}), timeout=60)
    assert third.state == "done" and backend.sessionId != old and third.outputs["warm"] is False
    backend.close()


def test_remote_errors_are_clear(server):
    with pytest.raises(BackendError, match="refused the access token"):
        RemoteBackend(server.url, "wrong-token-xyz").checkVersion()
    with pytest.raises(BackendError, match="lacks its scheme; write http://127.0.0.1"):
        HttpApi("127.0.0.1:1", "t")
    from slicer_helpers import free_port

    with pytest.raises(BackendError, match="cannot reach the MultiModalGen server"):
        RemoteBackend(f"http://127.0.0.1:{free_port()}", "t").checkVersion()


class _DoneBackend:
    """A backend whose every job ends at once with `outputs` (what a worker replies: metrics + file refs)."""

    def __init__(self, outputs):
        self.outputs = outputs

    def submit(self, task, params, onEvent=None):
        from multimodalgen.worker.process import Job

        job = Job(id="1", task=task, params=params)
        job.apply({"type": "result", "id": "1", "outputs": dict(self.outputs)})
        return job

    def wait(self, job, timeout=None, tick=None):
        return job

    def poll(self):
        return []

    def close(self):
        pass


def test_runner_surfaces_the_warnings_of_a_successful_task():
    reply = {"segmentation": "x.nii.gz", "warnings": ["implausible tissue proportions (...)"]}
    runner = TaskRunner(settingsStore=sx.SettingsStore(), backendFactory=lambda settings: _DoneBackend(reply))
    logged = []
    runner.logCallback = logged.append
    finished = []
    assert runner.run("segment", {}, onFinished=lambda r, e: finished.append(list(runner.lastWarnings))) == reply
    assert runner.lastWarnings == ["implausible tissue proportions (...)"]
    assert finished == [runner.lastWarnings]                            # known before onFinished runs
    assert logged == ["warning: implausible tissue proportions (...)"]
    runner._backend = _DoneBackend({"segmentation": "y.nii.gz"})        # the next task without warnings clears them
    runner.run("segment", {})
    assert runner.lastWarnings == []
