"""Benchmark: read a 256^3 volume and resample it to 1 mm isotropic — multimodalgen vs SimpleITK, side by side.

    python benchmarks/io/bench_resample.py [--repeats 3] [--threads 2]

Each measurement runs in a fresh subprocess (so peak RSS is that tool's alone). The input is a generated
256x256x256 float32 NIfTI with 0.9 x 0.9 x 1.3 mm voxels and an oblique orientation (written once to a temp folder).
Prints a markdown table (median seconds over repeats, peak RSS in MiB) and the max difference between outputs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

CHILD = r"""
import json, sys, time, os
from peak_memory import own_peak_rss_mb  # VmHWM: this process only (ru_maxrss would include the parent at spawn)
os.environ.setdefault("OMP_NUM_THREADS", sys.argv[3])
tool, path, threads, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
start = time.perf_counter()
if tool == "multimodalgen":
    import torch
    torch.set_num_threads(threads)
    from multimodalgen.io import read_volume
    from multimodalgen.resample import resample_isotropic
    t0 = time.perf_counter()
    vol = read_volume(path)
    t_read = time.perf_counter() - t0
    iso = resample_isotropic(vol, 1.0)
    t_total = time.perf_counter() - t0
    import numpy as np
    np.save(out, iso.array[::8, ::8, ::8])
    shape = iso.shape3d
else:
    import SimpleITK as sitk
    import numpy as np
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)
    t0 = time.perf_counter()
    img = sitk.ReadImage(path)
    t_read = time.perf_counter() - t0
    spacing = np.array(img.GetSpacing()); size = np.array(img.GetSize())
    new_size = [int(np.ceil(s * n / 1.0 - 1e-6)) for s, n in zip(spacing, size)]
    direction = np.array(img.GetDirection()).reshape(3, 3)
    corner = np.array(img.TransformContinuousIndexToPhysicalPoint([-0.5] * 3))
    origin = corner + direction @ np.full(3, 0.5)
    res = sitk.Resample(img, new_size, sitk.Transform(), sitk.sitkLinear, origin.tolist(), [1.0] * 3,
                        img.GetDirection(), 0.0, sitk.sitkFloat32)
    t_total = time.perf_counter() - t0
    arr = np.transpose(sitk.GetArrayFromImage(res), (2, 1, 0))
    np.save(out, arr[::8, ::8, ::8])
    shape = tuple(new_size)
peak = own_peak_rss_mb()
print(json.dumps({"read_s": t_read, "total_s": t_total, "peak_mib": peak, "shape": list(shape)}))
"""


def make_input(folder: Path) -> Path:
    import numpy as np

    sys.path.insert(0, str(ROOT / "MultiModalGen"))
    from multimodalgen.io import write_volume
    from multimodalgen.volume import Volume

    rng = np.random.default_rng(0)
    grid = np.linspace(-1, 1, 256, dtype=np.float32)
    x, y, z = np.meshgrid(grid, grid, grid, indexing="ij", sparse=True)
    array = (1000 * np.exp(-(x ** 2 + y ** 2 + z ** 2) * 3) + 100 * np.sin(8 * x) * np.cos(6 * y)
             + rng.normal(0, 5, (256, 256, 256)).astype(np.float32)).astype(np.float32)
    angle = np.deg2rad(12)
    rot = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rot @ np.diag([0.9, 0.9, 1.3])
    affine[:3, 3] = [-115, -115, -166]
    path = folder / "vol256.nii"
    write_volume(Volume(array, affine, "T1"), path, compress=False)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    import numpy as np

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        path = make_input(tmp)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "MultiModalGen"), str(ROOT / "benchmarks")]))
        rows = {}
        for repeat in range(args.repeats):
            for tool in ("simpleitk", "multimodalgen"):  # interleaved so machine noise hits both
                out = tmp / f"{tool}.npy"
                proc = subprocess.run([sys.executable, "-c", CHILD, tool, str(path), str(args.threads), str(out)],
                                      capture_output=True, text=True, env=env, check=True)
                rows.setdefault(tool, []).append(json.loads(proc.stdout.strip().splitlines()[-1]))
        diff = float(np.abs(np.load(tmp / "multimodalgen.npy") - np.load(tmp / "simpleitk.npy")).max())
    print(f"\nRead 256^3 float32 NIfTI (0.9x0.9x1.3 mm, oblique) + linear resample to 1 mm isotropic, "
          f"{args.threads} threads, median of {args.repeats} runs (each in a fresh process)\n")
    print("| tool | output shape | read s | read+resample s | peak RSS MiB |")
    print("|---|---|---|---|---|")
    for tool, runs in rows.items():
        print(f"| {tool} | {runs[0]['shape']} | {statistics.median(r['read_s'] for r in runs):.2f} | "
              f"{statistics.median(r['total_s'] for r in runs):.2f} | "
              f"{statistics.median(r['peak_mib'] for r in runs):.0f} |")
    ratio = statistics.median(r["total_s"] for r in rows["multimodalgen"]) / statistics.median(
        r["total_s"] for r in rows["simpleitk"])
    print(f"\ntime ratio multimodalgen / SimpleITK: {ratio:.2f}; max |difference| of outputs "
          f"(every 8th voxel): {diff:.4f} (intensities up to ~1100)")


if __name__ == "__main__":
    main()
