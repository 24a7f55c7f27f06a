"""Worker protocol end to end with a real backend process (python -m multimodalgen.worker)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from multimodalgen.worker import protocol
from multimodalgen.worker.process import WorkerClient, WorkerStartError, worker_command

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ENV = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "MultiModalGen"))


@pytest.fixture()
def client():
    c = WorkerClient(worker_command(), env=ENV, cancel_grace_s=0.3)
    yield c
    c.close()


def test_protocol_messages_validate_and_round_trip():
    for message in (protocol.request("a", "register", {"fixed": {"file": "/x.nii.gz"}}),
                    protocol.progress("a", "affine", 0.5, "level 2"), protocol.result("a", {"x": 1}, 0.1),
                    protocol.error("a", "user_input", "bad")):
        assert protocol.decode(protocol.encode(message)) == message
    for bad in ('{"type":"progress","id":"a","stage":"s","fraction":1.5,"message":""}', '[1]', '{"type":"nope"}',
                '{"type":"request","id":"","task":"x"}', '{"type":"error","id":"a","kind":"weird","message":"m"}'):
        with pytest.raises(protocol.ProtocolError):
            protocol.decode(bad)
    refs = {"a": {"file": "/p"}, "b": [{"upload": "u1"}, 3], "c": {"file": "/q", "extra": 1}}
    assert protocol.collect_file_refs(refs) == [{"file": "/p"}, {"upload": "u1"}]
    assert protocol.map_file_refs(refs, lambda r: "X") == {"a": "X", "b": ["X", 3], "c": {"file": "/q", "extra": 1}}


def test_worker_stdout_carries_only_protocol_lines():
    """Raw subprocess: every stdout line is a valid message even when a task prints to stdout."""
    lines = [protocol.encode(protocol.request("r1", "selftest.sleep", {"seconds": 0.05, "steps": 2})),
             "this is not json\n", protocol.encode(protocol.request("r2", "no.such.task"))]
    proc = subprocess.run([sys.executable, "-m", "multimodalgen.worker"], input="".join(lines), env=ENV,
                          capture_output=True, text=True, timeout=60)
    messages = [protocol.decode(line) for line in proc.stdout.splitlines()]
    assert messages[0]["type"] == "ready" and messages[0]["protocol"] == protocol.PROTOCOL_VERSION
    kinds = [(m["type"], m.get("id"), m.get("kind")) for m in messages[1:]]
    assert ("result", "r1", None) in kinds
    assert ("error", "protocol", "protocol") in kinds
    assert ("error", "r2", "unknown_task") in kinds
    assert proc.returncode == 0  # EOF on stdin ends the worker


def test_worker_removes_only_the_work_folder_it_made(tmp_path):
    """Outputs of requests without output_dir go to the worker's own temp folder, removed when the worker ends (no
    patient data left in the system temp folder); a --workdir the caller chose is kept."""
    line = protocol.encode(protocol.request("r1", "selftest.sleep", {"seconds": 0.01, "steps": 1}))
    temp, chosen = tmp_path / "temp", tmp_path / "chosen"
    temp.mkdir()
    for extra in ([], ["--workdir", str(chosen)]):
        proc = subprocess.run([sys.executable, "-m", "multimodalgen.worker", *extra], input=line,
                              env=dict(ENV, TMPDIR=str(temp)), capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0 and '"result"' in proc.stdout, proc.stderr
    assert list(temp.iterdir()) == []
    assert (chosen / "r1").is_dir()


def test_job_with_progress_and_result(client):
    events = []
    job = client.run("selftest.sleep", {"seconds": 0.4, "steps": 4}, timeout=30,
                     on_event=lambda j, m: events.append(m))
    assert job.state == "done" and job.outputs["slept_s"] >= 0.4
    fractions = [m["fraction"] for m in events if m["type"] == "progress"]
    assert fractions == sorted(fractions) and fractions[0] == 0.0 and fractions[-1] == 1.0 and len(fractions) == 5
    assert events[-1]["type"] == "result"


@pytest.mark.parametrize("interruptible", [True, False])
def test_cancel_stops_within_one_second(client, interruptible):
    client.ensure_started()
    pid = client.process.pid
    job = client.submit("selftest.sleep", {"seconds": 60, "interruptible": interruptible})
    while job.stage != "sleep":
        client.poll(timeout=0.05)
    started = time.monotonic()
    latency = client.cancel(job)
    assert time.monotonic() - started < 1.0 and latency < 1.0
    assert job.state == "cancelled" and job.error_kind == "cancelled"
    # cooperative cancel keeps the warm worker; an uninterruptible task costs the process
    assert client.is_alive() is interruptible
    again = client.run("selftest.sleep", {"seconds": 0.05}, timeout=30)
    assert again.state == "done"
    assert (client.process.pid == pid) is interruptible


def test_killed_worker_is_reported_and_restarted(client):
    client.ensure_started()
    job = client.submit("selftest.sleep", {"seconds": 60})
    while job.stage != "sleep":
        client.poll(timeout=0.05)
    os.kill(client.process.pid, 9)
    client.wait(job, timeout=10)
    assert job.state == "failed" and job.error_kind == "worker_died"
    assert "exit code -9" in job.error_message and "restarts on the next action" in job.error_message
    job = client.run("selftest.sleep", {"seconds": 0.05}, timeout=30)
    assert job.state == "done" and client.restarts == 1


def test_error_kinds_reach_the_client(client):
    for kind, expected in (("user_input", "user_input"), ("resource", "resource"), ("memory", "resource"),
                           ("internal", "internal")):
        job = client.run("selftest.fail", {"kind": kind}, timeout=30)
        assert (job.state, job.error_kind) == ("failed", expected)
    assert "Traceback" in (job.error_detail or "")
    assert client.run("no.such.task", {}, timeout=30).error_kind == "unknown_task"
    job = client.run("selftest.fail", {"kind": "exit", "code": 5}, timeout=30)
    assert job.error_kind == "worker_died" and "exit code 5" in job.error_message
    assert "exiting on purpose" in job.error_message  # the stderr tail explains what happened


def test_warm_state_is_kept_between_requests(client):
    first = client.run("selftest.cache", {"image_id": "img-1", "seconds": 0.3}, timeout=30)
    second = client.run("selftest.cache", {"image_id": "img-1", "seconds": 0.3}, timeout=30)
    other = client.run("selftest.cache", {"image_id": "img-2", "seconds": 0.0}, timeout=30)
    assert (first.outputs["warm"], second.outputs["warm"], other.outputs["warm"]) == (False, True, False)
    assert second.outputs["computed_at"] == first.outputs["computed_at"]
    info = client.run("worker.info", {}, timeout=30).outputs
    assert info["state"]["feature_hits"] == 1 and info["protocol"] == protocol.PROTOCOL_VERSION
    assert "torch" not in json.dumps(info["tasks"])


def test_start_failure_is_clear():
    bad = WorkerClient([sys.executable, "-c", "import sys; sys.stderr.write('boom: no backend\\n'); sys.exit(4)"],
                       start_timeout=20)
    with pytest.raises(WorkerStartError, match="boom: no backend"):
        bad.ensure_started()
