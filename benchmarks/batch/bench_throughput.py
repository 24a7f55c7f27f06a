"""Batch throughput: studies per minute for the in-process baseline, the local process pool and Ray, on one cohort.

    python benchmarks/batch/bench_throughput.py [--studies 12] [--register-studies 4] [--workers 2] [--json F]

Generates a cohort (no real data): `--studies` studies of an anisotropic image + label map (default 96x96x40 voxels
at 0.9x0.9x3 mm) for the `resample` task (to 1 mm), and, if the registration engine is present,
`--register-studies` small fixed/moving pairs (32x32x24 at 2 mm, the moving one shifted and scaled) for the
`register` task. Each task runs with `multimodalgen.batch.run` on:

- inline: `workers=0`, one study at a time in this process (the baseline: no engine at all);
- local: the process pool (`--workers` processes, 1 thread each);
- ray: a fresh local Ray instance (`--workers` actors, 1 CPU each), as `multimodalgen batch --engine ray` does.

Reported per run: wall time, engine start-up (from starting the engine to its first result, less that study's own
time: process spawn and imports; Ray: connecting or starting Ray and starting the actors), studies/min on the wall
clock and excluding start-up, the mean time inside a study, and the engine overhead per study,
``(wall - startup) * workers / n - mean study time`` (the wall-clock cost per study that is not the study's own
work, spread over the workers; for inline workers = 1). For Ray also `ray_dispatch_ms`: per study, (result
received - submitted) - time inside the study, i.e. Ray's own serialisation, scheduling and transfer cost.
Finally the median round trip of a no-op Ray actor call.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "MultiModalGen"))


def blob(shape, rng, shift=(0.0, 0.0, 0.0), scale=1.0) -> tuple[np.ndarray, np.ndarray]:
    """A smooth image (Gaussian blobs on a gradient, float32) and a 2-label map of its two largest blobs."""
    grid = np.stack(np.meshgrid(*[np.arange(s, dtype=np.float32) for s in shape], indexing="ij"))
    centre = np.asarray(shape, np.float32) / 2 + np.asarray(shift, np.float32)
    image = 20.0 * grid[0] / shape[0]
    labels = np.zeros(shape, np.uint8)
    for index, (offset, radius, value) in enumerate((((-0.15, 0, 0), 0.18, 600.0), ((0.2, 0.1, 0), 0.12, 300.0),
                                                      ((0, -0.2, 0.1), 0.08, 900.0))):
        c = centre + np.asarray(offset, np.float32) * np.asarray(shape) * scale
        r = radius * min(shape) * scale
        d2 = ((grid - c[:, None, None, None]) ** 2).sum(0)
        image += value * np.exp(-d2 / (2 * r * r))
        if index < 2:
            labels[d2 < r * r] = index + 1
    image += rng.normal(0, 5, shape).astype(np.float32)
    return image.astype(np.float32), labels


def make_resample_cohort(root: Path, n: int, shape) -> Path:
    from multimodalgen.io import write_label, write_volume
    from multimodalgen.volume import Volume

    rng = np.random.default_rng(0)
    rows = ["study_id,image,label"]
    affine = np.diag([0.9, 0.9, 3.0, 1.0])
    for i in range(n):
        image, labels = blob(shape, rng, shift=rng.uniform(-3, 3, 3))
        write_volume(Volume(image, affine, "T1"), root / f"r{i:03d}" / "t1.nii.gz")
        write_label(Volume(labels, affine, "LABEL"), root / f"r{i:03d}" / "label.nii.gz")
        rows.append(f"r{i:03d},r{i:03d}/t1.nii.gz,r{i:03d}/label.nii.gz")
    (root / "RESAMPLE.csv").write_text("\n".join(rows) + "\n")
    return root / "RESAMPLE.csv"


def make_register_cohort(root: Path, n: int, shape=(32, 32, 24)) -> Path:
    from multimodalgen.io import write_label, write_volume
    from multimodalgen.volume import Volume

    rng = np.random.default_rng(1)
    rows = ["study_id,fixed,moving,moving_labels,fixed_labels"]
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    for i in range(n):
        fixed, fixed_labels = blob(shape, rng)
        moving, moving_labels = blob(shape, rng, shift=rng.uniform(-2.5, 2.5, 3), scale=rng.uniform(0.9, 1.1))
        moving = 1000.0 - moving  # another contrast: inverted intensities
        folder = root / f"p{i:03d}"
        write_volume(Volume(fixed, affine, "T1"), folder / "fixed.nii.gz")
        write_label(Volume(fixed_labels, affine, "LABEL"), folder / "fixed_labels.nii.gz")
        write_volume(Volume(moving, affine, "T2"), folder / "moving.nii.gz")
        write_label(Volume(moving_labels, affine, "LABEL"), folder / "moving_labels.nii.gz")
        rows.append(f"p{i:03d},{folder.name}/fixed.nii.gz,{folder.name}/moving.nii.gz,"
                    f"{folder.name}/moving_labels.nii.gz,{folder.name}/fixed_labels.nii.gz")
    (root / "REGISTER.csv").write_text("\n".join(rows) + "\n")
    return root / "REGISTER.csv"


def measure(manifest: Path, task: str, out: Path, engine: str, workers: int, options: dict) -> dict:
    from multimodalgen.batch import run

    start = time.perf_counter()
    summary = run(manifest, task, out, engine=engine if engine != "inline" else "local", options=options,
                  workers=workers if engine != "inline" else 0, threads=1, device="cpu",
                  ray_init={"num_cpus": workers} if engine == "ray" else None)
    wall = time.perf_counter() - start
    info = summary.engine_info
    startup = info.get("startup_seconds", 0.0)
    seconds = [s["timings"]["seconds"] for s in summary.statuses if s.get("state") == "done"]
    n = summary.ran
    parallel = 1 if engine == "inline" else min(workers, n)
    study_mean = float(np.mean(seconds)) if seconds else float("nan")
    metrics = [s.get("metrics", {}).get("dice_mean") for s in summary.statuses]
    return {"task": task, "engine": engine, "workers": parallel, "studies": n, "failed": summary.failed,
            "wall_s": round(wall, 2), "startup_s": round(startup, 2),
            "per_min_wall": round(60 * n / wall, 1), "per_min_steady": round(60 * n / (wall - startup), 1),
            "study_mean_s": round(study_mean, 3),
            "overhead_per_study_s": round((wall - startup) * parallel / n - study_mean, 3),
            "ray_dispatch_ms": info.get("dispatch_overhead_ms_mean", ""),
            "dice_mean": round(float(np.mean([m for m in metrics if m is not None])), 4)
            if any(m is not None for m in metrics) else None}


def ray_round_trip(calls: int = 50) -> dict:
    """Median latency of a no-op actor call on a local Ray instance (the floor of Ray's per-study cost)."""
    import ray

    from multimodalgen.batch.ray_engine import local_init_kwargs

    ray.init(num_cpus=1, **local_init_kwargs())
    try:
        @ray.remote(num_cpus=1)
        class Echo:
            def ping(self, payload):
                return payload

        actor = Echo.remote()
        ray.get(actor.ping.remote(0))
        latencies = []
        for i in range(calls):
            t = time.perf_counter()
            ray.get(actor.ping.remote(i))
            latencies.append(time.perf_counter() - t)
        return {"ray_noop_call_ms_median": round(1000 * float(np.median(latencies)), 2)}
    finally:
        ray.shutdown()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=12)
    parser.add_argument("--shape", type=int, nargs=3, default=[96, 96, 40])
    parser.add_argument("--register-studies", type=int, default=4, help="0 skips the register task")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--engines", nargs="+", default=["inline", "local", "ray"])
    parser.add_argument("--repeats", type=int, default=1,
                        help="resample runs per engine (interleaved; the fastest is kept); register runs once")
    parser.add_argument("--work-dir", help="where the cohort and outputs go (default: a temporary folder)")
    parser.add_argument("--json", help="also write the rows as JSON here")
    args = parser.parse_args()

    import os

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    load_before = " ".join(f"{x:.1f}" for x in os.getloadavg())
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="bench_batch_"))
    work.mkdir(parents=True, exist_ok=True)
    plans = [(make_resample_cohort(work / "resample", args.studies, tuple(args.shape)), "resample",
              {"spacing": 1.0})]
    if args.register_studies:
        try:
            from multimodalgen.registration import register_files  # noqa: F401
        except ImportError as exc:
            print(f"register task skipped: registration engine not importable ({exc})")
        else:
            plans.append((make_register_cohort(work / "register", args.register_studies), "register",
                          {"preset": "fast"}))
    rows = []
    for manifest, task, options in plans:
        best: dict[str, dict] = {}
        for repeat in range(args.repeats if task == "resample" else 1):
            for engine in args.engines:
                row = measure(manifest, task, work / f"out_{task}_{engine}_{repeat}", engine, args.workers, options)
                print(json.dumps({"repeat": repeat, **row}), flush=True)
                if engine not in best or row["wall_s"] < best[engine]["wall_s"]:
                    best[engine] = row
        rows.extend(best[engine] for engine in args.engines)
    extra = ray_round_trip() if "ray" in args.engines else {}
    columns = ["task", "engine", "workers", "studies", "failed", "wall_s", "startup_s", "per_min_wall",
               "per_min_steady", "study_mean_s", "overhead_per_study_s", "ray_dispatch_ms", "dice_mean"]
    print(f"\nbest of {args.repeats} run(s) per engine; load average before: {load_before}")
    print(" | ".join(f"{c:>10}" for c in columns))
    for row in rows:
        print(" | ".join(f"{str(row[c]):>10}" for c in columns))
    for key, value in extra.items():
        print(f"{key}: {value}")
    print(f"(cpu cores: {os.cpu_count()}, cohort and outputs in {work})")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, **extra}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
