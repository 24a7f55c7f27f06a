"""Server-side bookkeeping: uploads, jobs (each in its own worker process) and interactive sessions (one warm
worker each), with expiry. Independent of HTTP so it can be tested and reused; `app` maps it onto routes.

A *job* started outside a session gets a fresh worker process, so cancel really stops it (the process is
killed if it does not stop cooperatively within the grace period). A *session* keeps one worker alive between
requests so models and encoder features stay warm; its jobs run on that worker one at a time. Idle sessions are
closed after `session_ttl_s`; their ids are remembered so a late call is told the session *expired* (HTTP 410),
not that it never existed.
"""

from __future__ import annotations

import dataclasses
import pathlib
import re
import secrets
import shutil
import threading
import time
from typing import Any

from multimodalgen.server.config import ServerConfig
from multimodalgen.worker import protocol
from multimodalgen.worker.process import Job, WorkerClient, WorkerStartError, worker_command


class ServiceError(Exception):
    """An error the HTTP layer turns into a response: `status` code, protocol error `kind`, one-line message."""

    def __init__(self, status: int, kind: str, message: str):
        super().__init__(message)
        self.status, self.kind, self.message = status, kind, message


def _new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(6)}"


_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]")
_PLAIN_NAME = re.compile(r"^(?!.*\.\.)[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def safe_filename(name: str) -> str:
    """A file name safe to create on the server (no folders, no odd characters), keeping the suffix."""
    name = pathlib.PurePosixPath(str(name).replace("\\", "/")).name
    name = _SAFE_NAME.sub("_", name).lstrip(".")
    return name[:120] or "upload.bin"


def _only_uploads(value: Any) -> bool:
    """True when every file inside `value` (nested lists/dicts) is an upload reference {"upload": id}."""
    if isinstance(value, dict):
        if "upload" in value:
            return set(value) == {"upload"} and isinstance(value["upload"], str)
        return bool(value) and all(_only_uploads(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return all(_only_uploads(v) for v in value)
    return False


@dataclasses.dataclass
class JobRecord:
    id: str
    task: str
    client: WorkerClient
    job: Job
    folder: pathlib.Path
    session_id: str | None
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)
    finished_at: float | None = None


@dataclasses.dataclass
class SessionRecord:
    id: str
    client: WorkerClient
    folder: pathlib.Path
    created: float
    last_used: float
    current_job: str | None = None
    uploads: set[str] = dataclasses.field(default_factory=set)  # upload ids its jobs used (deleted with it)


class Manager:
    """Uploads, jobs and sessions of one server. Thread-safe (FastAPI runs sync routes in a thread pool)."""

    def __init__(self, config: ServerConfig):
        self.config = config
        self.root = pathlib.Path(config.workdir)  # type: ignore[arg-type]
        self._lock = threading.RLock()
        self.uploads: dict[str, tuple[pathlib.Path, float]] = {}
        self.jobs: dict[str, JobRecord] = {}
        self.sessions: dict[str, SessionRecord] = {}
        self.expired_sessions: dict[str, float] = {}
        self._stop = threading.Event()
        self._janitor = threading.Thread(target=self._janitor_loop, name="mmg-server-janitor", daemon=True)
        self._janitor.start()

    # -- uploads -------------------------------------------------------------------------------------------
    def new_upload_path(self, filename: str) -> tuple[str, pathlib.Path]:
        upload_id = _new_id("u")
        folder = self.root / "uploads" / upload_id
        folder.mkdir(parents=True)
        return upload_id, folder / safe_filename(filename)

    def add_upload(self, upload_id: str, path: pathlib.Path) -> None:
        with self._lock:
            self.uploads[upload_id] = (path, time.time())

    def discard_upload(self, path: pathlib.Path) -> None:
        shutil.rmtree(path.parent, ignore_errors=True)

    def resolve_params(self, params: dict[str, Any], output_dir: pathlib.Path) -> dict[str, Any]:
        """Replace ``{"upload": id}`` with ``{"file": server path}``; refuse client-given server paths."""

        def resolve(ref: dict[str, str]) -> dict[str, str]:
            if "upload" not in ref:
                raise ServiceError(400, "user_input", "file parameters must be uploads ({\"upload\": id}); "
                                   "upload the file with POST /uploads first")
            with self._lock:
                entry = self.uploads.get(ref["upload"])
            if entry is None:
                raise ServiceError(404, "user_input", f"unknown or expired upload '{ref['upload']}'; upload the "
                                   "file again")
            return protocol.file_ref(str(entry[0]))

        resolved = protocol.map_file_refs(dict(params), resolve)
        resolved["output_dir"] = str(output_dir)
        resolved["adapters_dir"] = str(output_dir / "adapters")  # clients never choose server folders
        return resolved

    # -- jobs ----------------------------------------------------------------------------------------------
    def _worker_client(self) -> WorkerClient:
        return WorkerClient(worker_command(device=self.config.device, threads=self.config.threads),
                            cancel_grace_s=0.3)

    def check_remote_job(self, task: str, params: dict[str, Any]) -> None:
        """What a client may ask over HTTP: a verb (self-tests only with `allow_selftest`), files only as upload
        ids, model and adapter parameters only as plain names (resolved in the server's own folders), and no
        parameter that names a server path (`save_task`, `cases_csv`, whose rows would name server files)."""
        from multimodalgen.verbs import VERBS

        if not isinstance(task, str) or not task:
            raise ServiceError(400, "user_input", "a job needs a 'task' name")
        if task not in VERBS and not (self.config.allow_selftest and task.startswith("selftest.")):
            raise ServiceError(400, "user_input", f"task '{task}' is not available over HTTP; use one of "
                               f"{', '.join(sorted(VERBS))}")
        refused = sorted(set(params) & {"save_task", "cases_csv"})  # output_dir, adapters_dir: set by the server
        if refused:
            raise ServiceError(400, "user_input", f"parameter(s) {', '.join(refused)} cannot be given over HTTP "
                               "(they name server folders or settings); pass training cases as 'cases' uploads")
        if task in VERBS:
            from multimodalgen.verbs.registry import FILE_KINDS, file_values

            for p in VERBS[task].params:
                if p.kind in FILE_KINDS and p.name in params and not _only_uploads(file_values(p, params[p.name])):
                    raise ServiceError(400, "user_input", f"parameter '{p.name}' must name uploaded files "
                                       '({"upload": id}); upload the file with POST /uploads first')
        for name in ("adapter", "base_model", "encoder"):
            value = params.get(name)
            if value is not None and not (isinstance(value, str) and _PLAIN_NAME.match(value)):
                raise ServiceError(400, "user_input", f"parameter '{name}' must be the plain name of a model "
                                   "installed on the server (letters, digits, '.', '_', '-'), not a path")

    def start_job(self, task: str, params: dict[str, Any], session_id: str | None = None) -> JobRecord:
        """Start `task` in a new worker (or in session `session_id`'s worker). Raises ServiceError."""
        self.check_remote_job(task, params)
        job_id = _new_id("j")
        folder = self.root / "jobs" / job_id
        with self._lock:
            if session_id is None:
                running = sum(1 for r in self.jobs.values() if r.session_id is None and not r.job.done)
                if running >= self.config.max_jobs:
                    raise ServiceError(503, "capacity", f"the server is at capacity ({running} job(s) running, "
                                       f"limit {self.config.max_jobs}); try again when a job finishes")
                client = self._worker_client()
            else:
                session = self._session(session_id)
                if session.current_job and not self.jobs[session.current_job].job.done:
                    raise ServiceError(409, "capacity", "this session is busy with another request; wait for it "
                                       "or cancel it")
                client = session.client
                session.last_used = time.time()
            resolved = self.resolve_params(params, folder)
            if session_id is not None:
                session.uploads.update(ref["upload"] for ref in protocol.collect_file_refs(params)
                                       if isinstance(ref.get("upload"), str))
            folder.mkdir(parents=True)
            try:
                job = client.submit(task, resolved)
            except WorkerStartError as exc:
                raise ServiceError(500, "internal", f"cannot start a backend worker: {exc}") from exc
            record = JobRecord(job_id, task, client, job, folder, session_id)
            self.jobs[job_id] = record
            if session_id is not None:
                self.sessions[session_id].current_job = job_id
        threading.Thread(target=self._pump, args=(record,), name=f"mmg-job-{job_id}", daemon=True).start()
        return record

    def _pump(self, record: JobRecord) -> None:
        """Drain the worker's events until the job ends; close a job-private worker afterwards."""
        while True:
            with record.lock:
                record.client.poll(timeout=0)
                if record.job.done:
                    break
            time.sleep(0.03)
        record.finished_at = time.time()
        if record.session_id is None:
            record.client.close()
        else:
            with self._lock:
                session = self.sessions.get(record.session_id)
                if session is not None:
                    session.last_used = time.time()

    def get_job(self, job_id: str) -> JobRecord:
        with self._lock:
            record = self.jobs.get(job_id)
        if record is None:
            raise ServiceError(404, "user_input", f"unknown or expired job '{job_id}'")
        return record

    def cancel_job(self, job_id: str) -> dict[str, Any]:
        record = self.get_job(job_id)
        with record.lock:
            latency = record.client.cancel(record.job)
        return {"id": job_id, "state": record.job.state, "cancel_latency_s": round(latency, 4)}

    def job_status(self, job_id: str) -> dict[str, Any]:
        record = self.get_job(job_id)
        status = record.job.as_dict()
        status["id"] = job_id
        status["session_id"] = record.session_id
        return status

    def job_result(self, job_id: str) -> dict[str, Any]:
        """Outputs with local file references rewritten to download paths (``/jobs/{id}/files/...``)."""
        record = self.get_job(job_id)
        job = record.job
        if not job.done:
            raise ServiceError(409, "user_input",
                               f"job '{job_id}' is still running ({job.stage} {100 * (job.fraction or 0):.0f}%); "
                               "poll GET /jobs/{id} until state is done")
        body: dict[str, Any] = {"id": job_id, "state": job.state, "error_kind": job.error_kind,
                                "error_message": job.error_message}
        if job.state == "done":
            folder = record.folder.resolve()

            def to_download(ref: dict[str, str]) -> dict[str, str]:
                path = pathlib.Path(ref.get("file", "")).resolve()
                if folder not in path.parents:
                    return {"download": ""}  # never expose files outside the job folder
                return {"download": f"/jobs/{job_id}/files/{path.relative_to(folder).as_posix()}"}

            body["outputs"] = protocol.map_file_refs(job.outputs or {}, to_download)
        return body

    def job_file(self, job_id: str, relpath: str) -> pathlib.Path:
        record = self.get_job(job_id)
        folder = record.folder.resolve()
        path = (folder / relpath).resolve()
        if folder not in path.parents or not path.is_file():
            raise ServiceError(404, "user_input", f"job '{job_id}' has no file '{relpath}'")
        return path

    # -- sessions ------------------------------------------------------------------------------------------
    def open_session(self) -> SessionRecord:
        with self._lock:
            if len(self.sessions) >= self.config.max_sessions:
                raise ServiceError(503, "capacity", f"the server is at capacity ({len(self.sessions)} interactive "
                                   f"sessions open, limit {self.config.max_sessions}); try again later or ask "
                                   "the administrator to raise --max-sessions")
            session_id = _new_id("s")
            client = self._worker_client()
            now = time.time()
            session = SessionRecord(session_id, client, self.root / "sessions" / session_id, now, now)
            self.sessions[session_id] = session
        try:
            client.ensure_started()
        except WorkerStartError as exc:
            with self._lock:
                self.sessions.pop(session_id, None)
            raise ServiceError(500, "internal", f"cannot start a backend worker: {exc}") from exc
        return session

    def _session(self, session_id: str) -> SessionRecord:
        with self._lock:
            session = self.sessions.get(session_id)
            if session is None:
                if session_id in self.expired_sessions:
                    raise ServiceError(410, "session_expired", f"session '{session_id}' expired after "
                                       f"{self.config.session_ttl_s:.0f} s without use; start a new session "
                                       "(your segmentation in Slicer is kept)")
                raise ServiceError(404, "user_input", f"unknown session '{session_id}'")
            return session

    def touch_session(self, session_id: str) -> dict[str, Any]:
        session = self._session(session_id)
        session.last_used = time.time()
        return self.session_info(session)

    def session_info(self, session: SessionRecord) -> dict[str, Any]:
        remaining = self.config.session_ttl_s - (time.time() - session.last_used)
        return {"id": session.id, "expires_in_s": round(remaining, 1),
                "ttl_s": self.config.session_ttl_s, "worker_pid": session.client.process.pid
                if session.client.process else None}

    def close_session(self, session_id: str, expired: bool = False) -> None:
        with self._lock:
            session = self.sessions.pop(session_id, None)
            if session is None:
                self._session(session_id)  # raises the right error
                return
            if expired:
                self.expired_sessions[session_id] = time.time()
        session.client.close()
        shutil.rmtree(session.folder, ignore_errors=True)
        with self._lock:  # its job folders and uploads go with it (patient data is not kept past the session)
            done = [r for r in self.jobs.values() if r.session_id == session_id]
            for record in done:
                self.jobs.pop(record.id, None)
            uploads = [self.uploads.pop(u)[0] for u in session.uploads if u in self.uploads]
        for record in done:
            shutil.rmtree(record.folder, ignore_errors=True)
        for path in uploads:
            self.discard_upload(path)

    # -- expiry --------------------------------------------------------------------------------------------
    def sweep(self, now: float | None = None) -> None:
        """Close idle sessions, delete old finished jobs and uploads (called every second by the janitor)."""
        now = time.time() if now is None else now
        with self._lock:
            idle = [s.id for s in self.sessions.values()
                    if now - s.last_used > self.config.session_ttl_s
                    and not (s.current_job and not self.jobs[s.current_job].job.done)]
            old_jobs = [r for r in self.jobs.values()
                        if r.finished_at is not None and now - r.finished_at > self.config.job_ttl_s]
            for r in old_jobs:
                self.jobs.pop(r.id, None)
            old_uploads = [k for k, (_, t) in self.uploads.items() if now - t > self.config.job_ttl_s]
            paths = [self.uploads.pop(k)[0] for k in old_uploads]
        for session_id in idle:
            self.close_session(session_id, expired=True)
        for r in old_jobs:
            shutil.rmtree(r.folder, ignore_errors=True)
        for p in paths:
            self.discard_upload(p)

    def _janitor_loop(self) -> None:
        while not self._stop.wait(min(1.0, self.config.session_ttl_s / 4)):
            try:
                self.sweep()
            except Exception:  # noqa: BLE001 - the janitor must survive anything
                pass

    def shutdown(self) -> None:
        """Stop every worker (server exit)."""
        self._stop.set()
        with self._lock:
            sessions = list(self.sessions)
            records = list(self.jobs.values())
        for session_id in sessions:
            self.close_session(session_id)
        for record in records:
            if not record.job.done:
                with record.lock:
                    record.client.cancel(record.job)
        for record in records:
            if record.session_id is None:
                record.client.close()
        for folder in ("uploads", "jobs", "sessions"):  # nothing of the clients' data outlives the server
            shutil.rmtree(self.root / folder, ignore_errors=True)
        with self._lock:
            self.uploads.clear()
            self.jobs.clear()
