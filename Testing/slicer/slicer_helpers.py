"""Fixtures for the Slicer-side tests: a real `multimodalgen serve` process on 127.0.0.1."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "test-token-0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RunningServer:
    def __init__(self, url: str, token: str, proc: subprocess.Popen, workdir: Path):
        self.url, self.token, self.proc, self.workdir = url, token, proc, workdir


def start_server(tmp_path: Path, *extra: str) -> RunningServer:
    httpx = pytest.importorskip("httpx")
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT / "MultiModalGen"), MULTIMODALGEN_TOKEN=TOKEN)
    log = open(tmp_path / "server.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "multimodalgen.server", "--device", "cpu", "--port", str(port),
                             "--workdir", str(tmp_path / "work"), "--log-level", "warning", *extra],
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError((tmp_path / "server.log").read_text())
        try:
            httpx.get(url + "/version", timeout=1)
            return RunningServer(url, TOKEN, proc, tmp_path / "work")
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("server did not start: " + (tmp_path / "server.log").read_text())


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One server per test module (starting one takes ~2 s): upload limit 0.05 MiB, sessions expire after 1.5 s
    idle, one session and one job at a time. Tests leave no session or job running."""
    srv = start_server(tmp_path_factory.mktemp("server"), "--allow-selftest", "--max-upload-mb", "0.05", "--session-ttl", "1.5",
                       "--max-sessions", "1")
    yield srv
    srv.proc.terminate()
    try:
        srv.proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        srv.proc.kill()
