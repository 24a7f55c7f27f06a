"""`multimodalgen serve` with a real HTTP client on 127.0.0.1: token, upload limit, sessions, jobs, cancel."""

from __future__ import annotations

import time

import pytest

httpx = pytest.importorskip("httpx")


def api(server):
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {server.token}"}, timeout=30)


def wait_done(client, job_id, timeout=60):
    deadline = time.monotonic() + timeout
    states = []
    while time.monotonic() < deadline:
        status = client.get(f"/jobs/{job_id}").json()
        states.append(status["state"])
        if status["state"] != "running":
            return status, states
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} still running after {timeout} s")


def test_token_refused_then_accepted(server):
    for headers in ({}, {"Authorization": "Bearer wrong-token-123"}, {"Authorization": server.token}):
        r = httpx.get(server.url + "/version", headers=headers)
        assert r.status_code == 401 and "access token" in r.json()["message"]
    assert httpx.post(server.url + "/jobs", json={"task": "selftest.sleep"}).status_code == 401
    info = api(server).get("/version").json()
    assert info["protocol"] == 1 and "register" in info["tasks"] and info["limits"]["max_upload_mb"] == 0.05


def test_server_binds_loopback_by_default():
    from multimodalgen.server.config import ServerConfig
    from multimodalgen.errors import UserInputError

    assert ServerConfig(token="long-enough-token").is_loopback
    assert not ServerConfig(token="long-enough-token", host="0.0.0.0").is_loopback
    with pytest.raises(UserInputError, match="access token"):
        ServerConfig(token="short")


def test_oversize_upload_refused(server):
    client = api(server)
    small = client.post("/uploads", params={"name": "ok.nii.gz"}, content=b"x" * 1000)
    assert small.status_code == 200 and small.json()["bytes"] == 1000
    big = client.post("/uploads", params={"name": "big.nii.gz"}, content=b"x" * 60_000)
    assert big.status_code == 413 and "limit of 0.05 MiB" in big.json()["message"]

    def chunks():  # no Content-Length: the limit is enforced while streaming
        for _ in range(60):
            yield b"x" * 1000

    streamed = client.post("/uploads", params={"name": "big.nii.gz"}, content=chunks())
    assert streamed.status_code == 413
    assert not any((server.workdir / "uploads").glob("*/big.nii.gz"))  # partial uploads are deleted


def test_job_start_status_result_with_files(server):
    client = api(server)
    upload = client.post("/uploads", params={"name": "../../evil name.nii.gz"}, content=b"payload").json()
    assert upload["name"] == "evil_name.nii.gz"  # no path traversal, no odd characters
    job = client.post("/jobs", json={"task": "selftest.copy", "params": {"input": {"upload": upload["upload"]}}}).json()
    status, states = wait_done(client, job["id"])
    assert status["state"] == "done" and status["fraction"] == 1.0
    result = client.get(f"/jobs/{job['id']}/result").json()
    download = result["outputs"]["output"]["download"]
    assert download.startswith(f"/jobs/{job['id']}/files/")
    assert client.get(download).content == b"payload"
    assert client.get(f"/jobs/{job['id']}/files/../../server.log").status_code == 404
    refused = client.post("/jobs", json={"task": "selftest.copy", "params": {"input": {"file": "/etc/passwd"}}})
    assert refused.status_code == 400 and "uploads" in refused.json()["message"]


def test_job_progress_and_cancel_within_one_second(server):
    client = api(server)
    params = {"seconds": 60, "interruptible": False}
    job = client.post("/jobs", json={"task": "selftest.sleep", "params": params}).json()
    deadline = time.monotonic() + 30
    while client.get(f"/jobs/{job['id']}").json()["stage"] != "sleep" and time.monotonic() < deadline:
        time.sleep(0.05)
    busy = client.post("/jobs", json={"task": "selftest.sleep", "params": {"seconds": 1}})
    assert busy.status_code == 503 and busy.json()["kind"] == "capacity" and busy.headers["retry-after"]
    started = time.monotonic()
    answer = client.delete(f"/jobs/{job['id']}").json()
    assert time.monotonic() - started < 1.0
    assert answer["state"] == "cancelled"
    assert client.get(f"/jobs/{job['id']}/result").json()["state"] == "cancelled"


def test_job_errors_are_reported(server):
    client = api(server)
    job = client.post("/jobs", json={"task": "selftest.fail", "params": {"kind": "user_input"}}).json()
    status, _ = wait_done(client, job["id"])
    assert status["state"] == "failed" and status["error_kind"] == "user_input"
    unknown = client.post("/jobs", json={"task": "does.not.exist"})  # refused before any worker starts
    assert unknown.status_code == 400 and "not available over HTTP" in unknown.json()["message"]
    assert client.get("/jobs/j-unknown").status_code == 404


def test_session_warm_worker_capacity_and_expiry(server):
    client = api(server)
    session = client.post("/sessions").json()
    assert 0 < session["expires_in_s"] <= 1.5
    full = client.post("/sessions")
    assert full.status_code == 503 and "capacity" in full.json()["message"]
    outputs = []
    for _ in range(2):
        job = client.post(f"/sessions/{session['id']}/jobs",
                          json={"task": "selftest.cache", "params": {"image_id": "img", "seconds": 0.2}}).json()
        wait_done(client, job["id"])
        outputs.append(client.get(f"/jobs/{job['id']}/result").json()["outputs"])
    assert [o["warm"] for o in outputs] == [False, True]
    assert outputs[0]["pid"] == outputs[1]["pid"] == session["worker_pid"]
    time.sleep(3.0)  # > ttl 1.5 s: the janitor closes it
    expired = client.post(f"/sessions/{session['id']}/jobs", json={"task": "selftest.sleep"})
    assert expired.status_code == 410 and expired.json()["kind"] == "session_expired"
    assert "start a new session" in expired.json()["message"]
    assert client.post("/sessions").status_code == 200  # the slot was freed


def test_registration_job_start_status_result(tmp_path):
    """A real registration through the server (rigid, tiny synthetic volumes)."""
    import numpy as np

    from multimodalgen.io import read_volume, write_volume
    from multimodalgen.volume import Volume

    grid = np.indices((24, 24, 20)).astype(np.float32)
    scales = np.array([1.0, 1.5, 0.7])[:, None, None, None]

    def blob(c):
        return 1000 * np.exp(-(((grid - np.array(c)[:, None, None, None]) ** 2) * scales).sum(0) / 30)

    affine = np.diag([1.5, 1.5, 2.0, 1.0])
    write_volume(Volume(blob((12, 12, 10)) + blob((7, 15, 9)) * 0.5, affine, "T1"), tmp_path / "fixed.nii.gz")
    write_volume(Volume(blob((14, 11, 10)) + blob((9, 14, 9)) * 0.5, affine, "T1"), tmp_path / "moving.nii.gz")
    from slicer_helpers import start_server

    (tmp_path / "srv").mkdir()
    server = start_server(tmp_path / "srv", "--max-upload-mb", "20", "--threads", "1")
    try:
        _register_through(server, tmp_path)
    finally:
        server.proc.terminate()
        server.proc.wait(timeout=10)


def _register_through(server, tmp_path):
    import numpy as np

    from multimodalgen.io import read_volume

    client = api(server)
    ups = {}
    for n in ("fixed", "moving"):
        body = (tmp_path / f"{n}.nii.gz").read_bytes()
        answer = client.post("/uploads", params={"name": f"{n}.nii.gz"}, content=body)
        ups[n] = answer.json()["upload"]
    job = client.post("/jobs", json={"task": "register", "params": {
        "fixed": {"upload": ups["fixed"]}, "moving": {"upload": ups["moving"]}, "mode": "rigid", "preset": "fast",
        "resample": True}}).json()
    status, states = wait_done(client, job["id"], timeout=300)
    assert status["state"] == "done", status
    result = client.get(f"/jobs/{job['id']}/result").json()["outputs"]
    moved = np.asarray(result["affine"])[:3, 3]
    assert np.allclose(moved, [3.0, -1.5, 0.0], atol=0.5)  # fixed -> moving translation in mm
    assert any(s == "running" for s in states)
    (tmp_path / "warped.nii.gz").write_bytes(client.get(result["warped"]["download"]).content)
    assert read_volume(tmp_path / "warped.nii.gz").shape3d == (24, 24, 20)
