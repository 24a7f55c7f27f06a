"""Verb `batch`: run one task over a cohort manifest.

    multimodalgen batch --manifest STUDIES.csv --task register|segment|fewshot-apply|resample --out-dir D
                        [--engine local|ray] [--address A] [--workers N] [--force] [task options]

Global `--threads N` is the CPU threads per study and `--device` the device of GPU tasks. Exit code 0 when every
study is done, 1 when some failed (the others are still done; see D/summary.csv), 2 for a bad request.
With `--progress json`, each finished study prints `{"event": "study", "study_id", "state", "seconds", "error"}`
and the end `{"event": "result", ...summary}`.
"""

from __future__ import annotations

import json

from multimodalgen.batch.tasks import TASKS, all_options, task_names


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "batch", help="run a task over every study of a manifest (local process pool or Ray cluster)",
        description="Run one task over a cohort. Each study's outputs and status.json go to OUT_DIR/<study_id>/; "
                    "OUT_DIR/summary.csv collects states, timings and metrics. Finished studies are skipped on a "
                    "rerun (--force redoes them); a failing study is recorded and the batch goes on.")
    parser.add_argument("--manifest", required=True, help="STUDIES.csv: study_id plus the task's input columns "
                        "(register: fixed,moving[,moving_labels]; segment/fewshot-apply: T1,T2,...; resample: any "
                        "image columns); relative paths are relative to the CSV's folder")
    parser.add_argument("--task", required=True, choices=task_names(),
                        help="; ".join(f"{name}: {spec.help}" for name, spec in sorted(TASKS.items())))
    parser.add_argument("--out-dir", required=True, help="output folder D (one sub-folder per study)")
    parser.add_argument("--engine", choices=("local", "ray"), default="local",
                        help="local: process pool on this machine (default); ray: Ray actors (local or a cluster)")
    parser.add_argument("--address", help="Ray cluster address (auto, HOST:6379 or ray://HOST:10001); "
                        "default: start a local Ray instance")
    parser.add_argument("--workers", type=int, help="worker processes / Ray actors (default: one per GPU for GPU "
                        "tasks on CUDA, else cores // threads; 0 = run in this process, local engine only)")
    parser.add_argument("--force", action="store_true", help="redo studies that are already done")
    group = parser.add_argument_group("task options")
    for option in all_options().values():
        group.add_argument(f"--{option.name}", dest=option.key, default=None, choices=option.choices,
                           type=float if option.kind == "float" else int if option.kind == "int" else str,
                           help=option.help + (f" (default {option.default})" if option.default is not None else ""))
    parser.set_defaults(handler=run)


def run(args, ctx) -> int:
    from multimodalgen.batch.runner import run as run_batch
    from multimodalgen.batch.tasks import get_task

    spec = get_task(args.task)
    given = {key: getattr(args, key) for key in all_options() if getattr(args, key, None) is not None}
    json_mode = args.progress == "json"

    def on_study(status: dict) -> None:
        if json_mode:
            print(json.dumps({"event": "study", "study_id": status["study_id"], "state": status["state"],
                              "seconds": (status.get("timings") or {}).get("seconds"),
                              "error": status.get("error")}), flush=True)

    summary = run_batch(args.manifest, spec.name, args.out_dir, engine=args.engine, options=given,
                        workers=args.workers, threads=ctx.threads, device=ctx.device_name, address=args.address,
                        force=args.force, progress=ctx.progress, on_study=on_study)
    if json_mode:
        print(json.dumps({"event": "result", **summary.to_dict()}, default=str), flush=True)
    else:
        print(f"{summary.task}: {summary.done}/{summary.total} done ({summary.ran} ran, {summary.skipped} already "
              f"done), {summary.failed} failed, {summary.wall_seconds:.1f} s, {summary.studies_per_minute} "
              f"studies/min -> {summary.summary_csv}", flush=True)
        for study_id, error in list(summary.failed_ids.items())[:20]:
            print(f"  failed {study_id}: {error}", flush=True)
        if summary.failed > 20:
            print(f"  ... and {summary.failed - 20} more (see the summary CSV)", flush=True)
    return 0 if summary.failed == 0 else 1
