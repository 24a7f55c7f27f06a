"""HTTP API of `multimodalgen serve` (FastAPI): the worker protocol over HTTP for a remote GPU machine.

Every route needs ``Authorization: Bearer <token>``. Errors are JSON ``{"kind": ..., "message": ...}`` with
the protocol's error kinds (401 token, 404 unknown id, 409 busy / not finished, 410 session expired,
413 upload too large, 503 capacity).

Routes::

    GET    /version                          {"version", "protocol", "tasks", "limits"}: the client checks protocol
    POST   /uploads?name=fixed.nii.gz        raw file body (application/octet-stream) -> {"upload": id, "bytes"}
    POST   /jobs                             {"task", "params"} (file params as {"upload": id}) -> job status
    GET    /jobs/{id}                        {"state", "stage", "fraction", "message", "error_kind", ...}
    DELETE /jobs/{id}                        cancel (stops the job's worker if needed)
    GET    /jobs/{id}/result                 {"state", "outputs"} with file outputs as {"download": path}
    GET    /jobs/{id}/files/{path}           an output file
    POST   /sessions                         open an interactive session (one warm worker) -> {"id", "expires_in_s"}
    GET    /sessions/{id}                    keep-alive / info (410 once expired)
    POST   /sessions/{id}/jobs               a job on the session's warm worker
    DELETE /sessions/{id}                    close it
"""

from __future__ import annotations

import contextlib
import hmac
import pathlib
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse

import multimodalgen
from multimodalgen.server.config import ServerConfig
from multimodalgen.server.manager import Manager, ServiceError
from multimodalgen.worker import protocol
from multimodalgen.worker.tasks import task_names

UPLOAD_CHUNK = 1 << 20


class _TooLarge(Exception):
    pass


class JsonBodyLimit:
    """ASGI middleware: refuse (413) a request body above `limit` bytes on every route but POST /uploads (which has
    its own limit), whether announced by Content-Length or streamed."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, int(limit)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("path") == "/uploads":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:
            return await self._refuse(send)
        received = 0

        async def limited():
            nonlocal received
            message = await receive()
            if message.get("type") == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise _TooLarge
            return message

        try:
            await self.app(scope, limited, send)
        except _TooLarge:
            await self._refuse(send)

    async def _refuse(self, send):
        response = JSONResponse({"kind": "user_input", "message": f"the request body is larger than this server's "
                                 f"limit of {self.limit // 1024} KiB for JSON; send files with POST /uploads"},
                                status_code=413)
        await response({"type": "http"}, None, send)


def create_app(config: ServerConfig, manager: Manager | None = None):
    """Build the FastAPI application for `config` (this module is only imported when serving)."""
    manager = manager or Manager(config)

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        yield
        manager.shutdown()  # stop every worker process when the server exits

    app = FastAPI(title="MultiModalGen server", version=multimodalgen.__version__,
                  docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.manager = manager
    app.add_middleware(JsonBodyLimit, limit=int(config.max_json_kb * 1024))
    expected = f"Bearer {config.token}".encode()

    @app.exception_handler(ServiceError)
    async def _service_error(request: Request, exc: ServiceError):
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        if exc.status == 503:
            headers = {"Retry-After": "30"}
        return JSONResponse({"kind": exc.kind, "message": exc.message}, status_code=exc.status, headers=headers)

    def require_token(request: Request) -> None:
        given = request.headers.get("authorization", "").encode()
        if not hmac.compare_digest(given, expected):
            raise ServiceError(401, "user_input", "missing or wrong access token: send 'Authorization: Bearer "
                               "<token>' with the token the server was started with (--token or "
                               "MULTIMODALGEN_TOKEN)")

    auth = [Depends(require_token)]

    @app.get("/version", dependencies=auth)
    def version() -> dict[str, Any]:
        return {"name": "multimodalgen", "version": multimodalgen.__version__,
                "protocol": protocol.PROTOCOL_VERSION, "tasks": task_names(), "device": config.device,
                "limits": {"max_upload_mb": config.max_upload_mb, "max_jobs": config.max_jobs,
                           "max_sessions": config.max_sessions, "session_ttl_s": config.session_ttl_s}}

    @app.post("/uploads", dependencies=auth)
    async def upload(request: Request, name: str = "upload.bin") -> dict[str, Any]:
        limit = config.max_upload_bytes
        declared = request.headers.get("content-length")
        too_big = ServiceError(413, "user_input", f"the upload is larger than this server's limit of "
                               f"{config.max_upload_mb:g} MiB; crop or downsample the volume, or ask the "
                               "administrator to raise --max-upload-mb")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise too_big
        upload_id, path = manager.new_upload_path(name)
        size = 0
        try:
            with open(path, "wb") as handle:
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > limit:
                        raise too_big
                    handle.write(chunk)
        except BaseException:
            manager.discard_upload(path)
            raise
        manager.add_upload(upload_id, path)
        return {"upload": upload_id, "bytes": size, "name": path.name}

    @app.post("/jobs", dependencies=auth)
    def start_job(body: dict[str, Any]) -> dict[str, Any]:
        record = manager.start_job(body.get("task", ""), _params(body))
        return manager.job_status(record.id)

    @app.get("/jobs/{job_id}", dependencies=auth)
    def job_status(job_id: str) -> dict[str, Any]:
        return manager.job_status(job_id)

    @app.delete("/jobs/{job_id}", dependencies=auth)
    def cancel_job(job_id: str) -> dict[str, Any]:
        return manager.cancel_job(job_id)

    @app.get("/jobs/{job_id}/result", dependencies=auth)
    def job_result(job_id: str) -> dict[str, Any]:
        return manager.job_result(job_id)

    @app.get("/jobs/{job_id}/files/{relpath:path}", dependencies=auth)
    def job_file(job_id: str, relpath: str):
        path: pathlib.Path = manager.job_file(job_id, relpath)
        return FileResponse(path, media_type="application/octet-stream", filename=path.name)

    @app.post("/sessions", dependencies=auth)
    def open_session() -> dict[str, Any]:
        return manager.session_info(manager.open_session())

    @app.get("/sessions/{session_id}", dependencies=auth)
    def touch_session(session_id: str) -> dict[str, Any]:
        return manager.touch_session(session_id)

    @app.post("/sessions/{session_id}/jobs", dependencies=auth)
    def session_job(session_id: str, body: dict[str, Any]) -> dict[str, Any]:
        record = manager.start_job(body.get("task", ""), _params(body), session_id=session_id)
        return manager.job_status(record.id)

    @app.delete("/sessions/{session_id}", dependencies=auth)
    def close_session(session_id: str) -> dict[str, Any]:
        manager.close_session(session_id)
        return {"id": session_id, "closed": True}

    return app


def _params(body: dict[str, Any]) -> dict[str, Any]:
    params = body.get("params", {})
    if not isinstance(params, dict):
        raise ServiceError(400, "user_input", "'params' must be a JSON object")
    return params


def serve(config: ServerConfig, log_level: str = "info") -> None:
    """Run the server with uvicorn until interrupted."""
    import uvicorn

    uvicorn.run(create_app(config), host=config.host, port=int(config.port), log_level=log_level)
