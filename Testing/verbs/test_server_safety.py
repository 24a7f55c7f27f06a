"""A server a hostile client cannot read: files only as uploads, no self-test or internal tasks over HTTP, headers
cannot reference other files, a JSON body limit, and nothing left in the work folder after the server stops."""

from __future__ import annotations

import time

import httpx
import numpy as np
import pytest


def _client(server):
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {server.token}"}, timeout=30)


def _upload(client, name: str, body: bytes) -> dict:
    answer = client.post("/uploads", params={"name": name}, content=body)
    assert answer.status_code == 200, answer.text
    return {"upload": answer.json()["upload"]}


def _wait(client, job_id):
    deadline = time.monotonic() + 120
    while (status := client.get(f"/jobs/{job_id}").json())["state"] == "running":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    return status


@pytest.mark.parametrize("params", [{"input": "/etc/passwd"}, {"input": {"file": "/etc/passwd"}},
                                    {"input": ["/etc/passwd"]}])
def test_files_are_upload_ids_only(server, params):
    answer = _client(server).post("/jobs", json={"task": "convert", "params": params})
    assert answer.status_code == 400 and "upload" in answer.json()["message"]


@pytest.mark.parametrize("task", ["selftest.copy", "selftest.sleep", "worker.info", "worker.clear_cache"])
def test_self_test_and_internal_tasks_are_not_reachable(server, task):
    answer = _client(server).post("/jobs", json={"task": task, "params": {"input": {"upload": "u-1"}}})
    assert answer.status_code == 400 and "not available over HTTP" in answer.json()["message"]


@pytest.mark.parametrize("params", [{"images": {"T1": {"upload": "u-1"}}, "adapter": "/home/someone/adapter"},
                                    {"images": {"T1": {"upload": "u-1"}}, "base_model": "../models/x"},
                                    {"images": [{"upload": "u-1"}], "save_task": "/tmp/owned"},
                                    {"cases_csv": {"upload": "u-1"}}])
def test_parameters_naming_server_paths_are_refused(server, params):
    task = "segment" if "adapter" in params or "base_model" in params else \
        "fewshot" if "save_task" in params else "finetune"
    answer = _client(server).post("/jobs", json={"task": task, "params": params})
    assert answer.status_code == 400, answer.text


def test_json_bodies_have_a_limit(server):
    big = {"task": "convert", "params": {"input": {"upload": "u-1"}, "pad": "x" * (1 << 20)}}
    assert _client(server).post("/jobs", json=big).status_code == 413


def test_an_uploaded_header_cannot_reference_another_file(server):
    client = _client(server)
    header = ("ObjectType = Image\nNDims = 3\nDimSize = 4 4 4\nElementType = MET_UCHAR\n"
              "ElementDataFile = ../../../../../../etc/hostname\n").encode()
    job = client.post("/jobs", json={"task": "convert", "params": {"input": _upload(client, "x.mhd", header)}})
    assert job.status_code == 200, job.text
    status = _wait(client, job.json()["id"])
    assert status["state"] == "failed" and status["error_kind"] == "user_input"
    assert "not a file beside it" in status["error_message"]


def test_nothing_is_left_after_the_server_stops(tmp_path):
    from multimodalgen.io import write_volume
    from multimodalgen.volume import Volume
    from slicer_helpers import start_server

    write_volume(Volume(np.ones((6, 6, 6), np.float32), np.eye(4), "T1"), tmp_path / "in.nii.gz")
    (tmp_path / "srv").mkdir()
    server = start_server(tmp_path / "srv", "--threads", "1")
    try:
        client = _client(server)
        job = client.post("/jobs", json={"task": "convert", "params": {
            "input": _upload(client, "in.nii.gz", (tmp_path / "in.nii.gz").read_bytes())}})
        assert _wait(client, job.json()["id"])["state"] == "done"
        _upload(client, "unused.nii.gz", b"data")
        assert [p for p in server.workdir.rglob("*") if p.is_file()]
    finally:
        server.proc.terminate()
        server.proc.wait(timeout=20)
    assert [p for p in server.workdir.rglob("*") if p.is_file()] == []


def test_the_token_can_come_from_a_file(tmp_path):
    from multimodalgen.server.config import token_from

    (tmp_path / "token").write_text("file-token-0123456789\n")
    assert token_from(None, str(tmp_path / "token")) == "file-token-0123456789"
    assert token_from("cli-token-0123", str(tmp_path / "token")) == "cli-token-0123"


def test_an_expired_session_takes_its_uploads_and_job_folders(tmp_path):
    from multimodalgen.io import write_volume
    from multimodalgen.volume import Volume
    from slicer_helpers import start_server

    write_volume(Volume(np.ones((6, 6, 6), np.float32), np.eye(4), "T1"), tmp_path / "in.nii.gz")
    (tmp_path / "srv").mkdir()
    server = start_server(tmp_path / "srv", "--threads", "1", "--session-ttl", "1")
    try:
        client = _client(server)
        session = client.post("/sessions").json()["id"]
        upload = _upload(client, "in.nii.gz", (tmp_path / "in.nii.gz").read_bytes())
        job = client.post(f"/sessions/{session}/jobs", json={"task": "convert", "params": {"input": upload}})
        assert _wait(client, job.json()["id"])["state"] == "done"
        assert [p for p in server.workdir.rglob("*") if p.is_file()]
        time.sleep(3.0)  # > the 1 s idle limit (polling the session would keep it alive)
        assert client.get(f"/sessions/{session}").status_code == 410
        assert [p for p in server.workdir.rglob("*") if p.is_file()] == []
    finally:
        server.proc.terminate()
        server.proc.wait(timeout=20)
