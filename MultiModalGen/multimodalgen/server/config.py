"""Configuration of `multimodalgen serve`, validated once (typed dataclass, no globals)."""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import pathlib
import tempfile

from multimodalgen.errors import UserInputError

TOKEN_ENV = "MULTIMODALGEN_TOKEN"
MIN_TOKEN_LENGTH = 8


@dataclasses.dataclass
class ServerConfig:
    """Server settings.

    Attributes:
        token: the shared secret clients send as ``Authorization: Bearer <token>`` (required, >= 8 chars).
        host/port: where to listen; 127.0.0.1 by default (use an SSH tunnel or a TLS reverse proxy for remote).
        max_upload_mb: largest accepted upload (one file), in MiB.
        max_jobs: jobs running at once outside sessions (each in its own worker process); more -> HTTP 503.
        max_sessions: interactive sessions (each keeps one warm worker process); more -> HTTP 503.
        session_ttl_s: a session idle this long is closed (its worker stopped); later calls get HTTP 410.
        job_ttl_s: finished jobs and their files are deleted this long after finishing; uploads likewise.
        workdir: where uploads and job outputs go (a fresh temp folder by default).
        device/threads: passed to every worker ("auto", "cpu", "cuda[:N]"; 0 threads = default).
        max_json_kb: largest accepted JSON request body, in KiB (uploads have their own limit).
        allow_selftest: also accept the worker's protocol self-test tasks (tests only; never on a real server).
    """

    token: str
    host: str = "127.0.0.1"
    port: int = 8765
    max_upload_mb: float = 1024.0
    max_jobs: int = 1
    max_sessions: int = 4
    session_ttl_s: float = 900.0
    job_ttl_s: float = 3600.0
    workdir: pathlib.Path | None = None
    device: str = "auto"
    threads: int = 0
    max_json_kb: float = 256.0
    allow_selftest: bool = False

    def __post_init__(self) -> None:
        if not self.token or len(self.token) < MIN_TOKEN_LENGTH:
            raise UserInputError("the server needs an access token", expected=f"--token with at least "
                                 f"{MIN_TOKEN_LENGTH} characters or {TOKEN_ENV}",
                                 got="none" if not self.token else f"{len(self.token)} characters",
                                 fix=f"e.g. --token $(python -c 'import secrets; print(secrets.token_urlsafe(24))')")
        if not 0 < int(self.port) < 65536:
            raise UserInputError("invalid port", expected="1..65535", got=str(self.port))
        for name in ("max_upload_mb", "session_ttl_s", "job_ttl_s", "max_json_kb"):
            if float(getattr(self, name)) <= 0:
                raise UserInputError(f"invalid {name}", expected="a positive number", got=str(getattr(self, name)))
        for name in ("max_jobs", "max_sessions"):
            if int(getattr(self, name)) < 1:
                raise UserInputError(f"invalid {name}", expected="an integer >= 1", got=str(getattr(self, name)))
        if self.device not in ("auto", "cpu") and not str(self.device).startswith("cuda"):
            raise UserInputError("unknown device", expected="auto, cpu or cuda[:N]", got=repr(self.device))
        self.workdir = pathlib.Path(self.workdir) if self.workdir else pathlib.Path(
            tempfile.mkdtemp(prefix="mmg-server-"))
        self.workdir.mkdir(parents=True, exist_ok=True)

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def is_loopback(self) -> bool:
        """True when the server only listens on this machine."""
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False


def token_from(cli_value: str | None, token_file: str | None = None) -> str:
    """The token from --token, else the first line of --token-file, else the MULTIMODALGEN_TOKEN environment
    variable, else ''."""
    if cli_value:
        return cli_value
    if token_file:
        try:
            lines = pathlib.Path(token_file).read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise UserInputError(f"cannot read the token file {token_file}", got=exc.strerror or str(exc),
                                 fix="give a readable file whose first line is the token") from None
        return lines[0].strip() if lines else ""
    return os.environ.get(TOKEN_ENV, "")
