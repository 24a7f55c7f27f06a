"""The four doors to a verb (CLI, worker, batch, HTTP server), each run on the same inputs into its own folder.

Every door returns {output file name: local path} of what it wrote (server outputs downloaded, zipped folders
unpacked) so that the test can compare the files across doors.
"""

from __future__ import annotations

import csv
import io
import time
import zipfile
from pathlib import Path

from multimodalgen.worker import protocol


def files_in(folder: Path) -> dict[str, Path]:
    """Every visible output file under `folder` by its path relative to `folder` (status.json excluded)."""
    return {p.relative_to(folder).as_posix(): p for p in sorted(folder.rglob("*"))
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
            and p.name != "status.json"}


def cli_door(argv: list[str], folder: Path) -> dict[str, Path]:
    from multimodalgen.cli.main import main

    assert main(["--progress", "none", "--device", "cpu", "--threads", "1", *argv]) == 0
    return files_in(folder)


def as_refs(verb: str, params: dict, ref) -> dict:
    """`params` with every local file (per the verb's declaration) replaced by `ref(path)`."""
    from multimodalgen.verbs import get_verb
    from multimodalgen.verbs.registry import FILE_KINDS

    def walk(value):
        if isinstance(value, dict):
            return {k: walk(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [walk(v) for v in value]
        return ref(str(value))

    spec = get_verb(verb)
    out = {}
    for key, value in params.items():
        p = spec.param(key)
        if p is None or p.kind not in FILE_KINDS:
            out[key] = value
        elif p.kind == "cases":  # files under "images" and "label"; other keys (segment names) are data
            out[key] = [dict(case, images=walk(case["images"]), label=walk(case["label"])) for case in value]
        else:
            out[key] = walk(value)
    return out


def worker_door(worker, verb: str, params: dict, folder: Path) -> dict[str, Path]:
    refs = as_refs(verb, params, protocol.file_ref)
    extra = {"adapters_dir": str(folder)} if verb == "finetune" else {}
    job = worker.run(verb, dict(refs, output_dir=str(folder), **extra), timeout=300)
    assert job.state == "done", f"{job.error_kind}: {job.error_message}\n{job.error_detail}"
    return files_in(folder)


def server_door(server, verb: str, params: dict, folder: Path) -> dict[str, Path]:
    import httpx

    client = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {server.token}"}, timeout=60)

    def upload(path: str) -> dict:
        answer = client.post("/uploads", params={"name": Path(path).name}, content=Path(path).read_bytes())
        assert answer.status_code == 200, answer.text
        return {"upload": answer.json()["upload"]}

    refs = as_refs(verb, params, upload)
    job = client.post("/jobs", json={"task": verb, "params": refs})
    assert job.status_code == 200, job.text
    job_id = job.json()["id"]
    deadline = time.monotonic() + 300
    while client.get(f"/jobs/{job_id}").json()["state"] == "running":
        assert time.monotonic() < deadline, "server job did not finish"
        time.sleep(0.1)
    result = client.get(f"/jobs/{job_id}/result").json()
    assert result["state"] == "done", result
    folder.mkdir(parents=True, exist_ok=True)
    for url in _downloads(result["outputs"]):
        body = client.get(url).content
        name = url.rsplit("/", 1)[-1]
        if name.endswith(".zip"):
            zipfile.ZipFile(io.BytesIO(body)).extractall(folder / name[1:-4])
        else:
            (folder / name).write_bytes(body)
    return files_in(folder)


def _downloads(outputs) -> list[str]:
    found = []
    if isinstance(outputs, dict):
        if set(outputs) == {"download"}:
            return [outputs["download"]]
        for value in outputs.values():
            found += _downloads(value)
    elif isinstance(outputs, list):
        for value in outputs:
            found += _downloads(value)
    return found


def batch_door(task: str, columns: dict[str, str], options: dict, folder: Path) -> dict[str, Path]:
    from multimodalgen.batch import run

    manifest = folder.parent / f"{folder.name}.csv"
    with open(manifest, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["study_id", *columns])
        writer.writerow(["s1", *columns.values()])
    summary = run(manifest, task, folder, workers=0, device="cpu", threads=1, options=options)
    assert summary.done == 1, summary.failed_ids
    return files_in(folder / "s1")
