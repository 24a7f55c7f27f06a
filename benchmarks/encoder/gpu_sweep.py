"""Train several encoder pretraining configs side by side on one lent GPU, inside a fixed wall-clock budget.

    OUT=/path/for/results python benchmarks/encoder/gpu_sweep.py --configs DIR --budget-s 470 [--device cuda]

Made for short GPU loans (minutes of device time): the small encoder leaves one GPU mostly idle, so N runs in
parallel cost about the time of one. Three phases, all inside `--budget-s` seconds:

1. calibration: every config trains `--calibration-steps` steps at once (into a scratch folder) to measure the
   seconds per step of each run while all of them share the GPU;
2. training: each config's `steps` is set so that the run ends inside the remaining budget (its cosine schedule
   then decays fully) and all runs start at once with `multimodalgen.encoder.train`; a run still going at the
   deadline is stopped, and its last checkpoint (`checkpoint_every`) is kept;
3. export for the trip back: `$OUT/<config>.pt` (network + training heads + config + step, no optimiser state:
   small enough to fetch; loadable as `init_from` and by `benchmarks/encoder/run_benchmark.py --checkpoint`) and
   `$OUT/<config>_log.jsonl` (the run's training log).

Configs are ordinary pretraining configs (`multimodalgen.encoder.train.PretrainConfig` JSON; `init_from` paths are
relative to the repository root). Evaluate the results on the CPU machine with `run_benchmark.py --checkpoint`.
encoder-v2's third stage is `configs/gpu_sweep_2026-11-26/gpu1_C_run4_id.json` from such a sweep (see README.md).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def launch(config: Path, run_dir: Path, device: str, max_steps: int | None = None) -> subprocess.Popen:
    """Start `python -m multimodalgen.encoder.train` for `config` into `run_dir` (stdout to `run_dir`.stdout)."""
    env = dict(os.environ, PYTHONPATH=str(REPO / "MultiModalGen"), PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "multimodalgen.encoder.train", "--config", str(config), "--out", str(run_dir),
           "--device", device] + (["--max-steps", str(max_steps)] if max_steps else [])
    return subprocess.Popen(cmd, env=env, cwd=REPO, stdout=open(f"{run_dir}.stdout", "w"), stderr=subprocess.STDOUT)


def seconds_per_step(run_dir: Path) -> float:
    """Mean seconds per step between the second and the last log line of a run (skips start-up and warm-up)."""
    log = [json.loads(line) for line in (run_dir / "train_log.jsonl").read_text().splitlines()]
    if len(log) < 3:
        raise RuntimeError(f"{run_dir}: too few log lines to time (raise --calibration-steps or lower log_every)")
    return (log[-1]["time"] - log[1]["time"]) / (log[-1]["step"] - log[1]["step"])


def slim_checkpoint(last: Path, out: Path) -> int:
    """Copy a checkpoint without its optimiser state (about a third of the size); returns its step."""
    import torch

    state = torch.load(last, map_location="cpu", weights_only=True)
    torch.save({k: state[k] for k in ("format", "engine_version", "step", "config", "model", "heads")}, out)
    return int(state["step"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--configs", required=True, help="folder of pretraining config JSON files (one run each)")
    parser.add_argument("--budget-s", type=float, required=True, help="wall-clock seconds for the whole sweep")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--calibration-steps", type=int, default=30)
    parser.add_argument("--work", default="/tmp/gpu_sweep", help="scratch folder for the runs")
    parser.add_argument("--margin-s", type=float, default=45.0, help="seconds kept for stopping and export")
    parser.add_argument("--fill", type=float, default=0.85, help="fraction of the remaining time given to steps")
    args = parser.parse_args(argv)
    t_start = time.time()
    out = Path(os.environ.get("OUT", "/tmp/gpu_sweep_out"))
    out.mkdir(parents=True, exist_ok=True)
    configs = sorted(Path(args.configs).glob("*.json"))
    if not configs:
        raise SystemExit(f"no *.json config in {args.configs}")
    work = Path(args.work)
    (work / "calibration").mkdir(parents=True, exist_ok=True)
    (work / "runs").mkdir(parents=True, exist_ok=True)

    procs = [launch(c, work / "calibration" / c.stem, args.device, args.calibration_steps) for c in configs]
    if any(p.wait() != 0 for p in procs):
        print(open(f"{work / 'calibration' / configs[0].stem}.stdout").read()[-3000:])
        raise SystemExit("calibration failed (output of the first run above)")
    rates = {c.stem: seconds_per_step(work / "calibration" / c.stem) for c in configs}
    print(json.dumps({"seconds_per_step_in_parallel": rates}), flush=True)

    train_s = args.budget_s - (time.time() - t_start) - args.margin_s
    runs = {}
    for c in configs:
        cfg = json.loads(c.read_text())
        cfg["steps"] = max(50, int(train_s * args.fill / rates[c.stem]))
        resolved = work / "runs" / f"{c.stem}.json"
        resolved.write_text(json.dumps(cfg, indent=1))
        print(json.dumps({"config": c.stem, "planned_steps": cfg["steps"]}), flush=True)
        runs[c.stem] = launch(resolved, work / "runs" / c.stem, args.device)
    deadline = t_start + args.budget_s - args.margin_s + 5
    while any(p.poll() is None for p in runs.values()) and time.time() < deadline:
        time.sleep(5)
    for name, proc in runs.items():
        if proc.poll() is None:
            proc.terminate()
            print(json.dumps({"config": name, "stopped_at_deadline": True}), flush=True)
        proc.wait()

    for name in runs:
        run_dir = work / "runs" / name
        if (run_dir / "last.pt").is_file():
            step = slim_checkpoint(run_dir / "last.pt", out / f"{name}.pt")
            (out / f"{name}_log.jsonl").write_text((run_dir / "train_log.jsonl").read_text())
            print(json.dumps({"config": name, "step": step}), flush=True)
        else:
            print(json.dumps({"config": name, "error": "no checkpoint"}), flush=True)
    print(json.dumps({"total_s": round(time.time() - t_start, 1)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
