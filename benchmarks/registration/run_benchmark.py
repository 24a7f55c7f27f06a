"""Run the reference registration harness with `multimodalgen register` beside the baselines, in ONE run.

    python benchmarks/registration/run_benchmark.py                  # full: identity,sitk_affine,sitk,ants,elastix,convexadam + ours
    python benchmarks/registration/run_benchmark.py --methods identity --out benchmarks/registration/results_quick
    python benchmarks/registration/run_benchmark.py --set heldout --methods identity,ants,convexadam  # stand-ins

`--set heldout` first renders and builds the stand-in cases of `heldout_cases.py` (PET-like, EPI-like, anisotropic,
flipped + rotated, CT-like; data under /tmp, never committed) and gives them to the harness as `--cases-file`.
The harness (`../shared/bench/registration/run.py`, read-only) builds the synthetic dev cases, runs the baselines
in-process, runs our command once per case through the shell (wall time includes start-up and writing
outputs) and scores everything the same way (Dice from our warped labels and, independently, from our
transform.h5; TRE with the known ground-truth map; folding). The printed table is the harness's own.
Needs the harness packages in the venv: `pip install -r ../shared/bench/requirements.txt`.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_HARNESS = ROOT.parent / "shared" / "bench" / "registration" / "run.py"


def tool_command(venv_bin: Path, threads: int, preset: str, extra: str = "") -> str:
    """The harness's tool template (placeholders filled per case by the harness); `extra`: more register options."""
    return (f"{venv_bin / 'multimodalgen'} --progress none --threads {threads} register --preset {preset} "
            + (extra + " " if extra else "") + "--fixed {fixed} --moving {moving} --moving-labels {moving_labels} "
            "--out-dir {out}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--harness", default=str(DEFAULT_HARNESS), help="path of the reference run.py")
    ap.add_argument("--set", default="dev", help="dev (the harness's cases) or heldout (heldout_cases.py)")
    ap.add_argument("--methods", default="identity,sitk_affine,sitk,ants,elastix,convexadam", help="harness baselines")
    ap.add_argument("--cases", default=None, help="comma-separated substrings selecting cases")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--preset", default="fast", choices=("fast", "accurate"))
    ap.add_argument("--tool-name", default="multimodalgen")
    ap.add_argument("--tool-args", default="", help="more register options, e.g. "
                    "'--features mind+encoder --encoder encoder-v4:correspondence' (name the column with --tool-name)")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    a = ap.parse_args(argv)
    venv_bin = Path(sys.executable).parent
    if not (venv_bin / "multimodalgen").exists():
        print(f"no multimodalgen console script next to {sys.executable}: pip install -e {ROOT}", file=sys.stderr)
        return 2
    out = Path(a.out).resolve()  # the harness runs in its own (read-only) folder
    cmd = [sys.executable, a.harness, "--set", a.set, "--methods", a.methods,
           "--tool", tool_command(venv_bin, a.threads, a.preset, a.tool_args), "--tool-name", a.tool_name, "--out", str(out)]
    if a.set == "heldout":
        from heldout_cases import DEFAULT_DATA, SHARED, build

        cmd += ["--cases-file", str(build()), "--data-root", str(DEFAULT_DATA), "--shared-root", str(SHARED)]
        if a.out == str(Path(__file__).resolve().parent / "results"):
            a.out = str(Path(__file__).resolve().parent / "results" / "heldout")
            cmd[cmd.index("--out") + 1] = str(Path(a.out).resolve())
    if a.cases:
        cmd += ["--cases", a.cases]
    env = dict(os.environ, OMP_WAIT_POLICY=os.environ.get("OMP_WAIT_POLICY", "PASSIVE"))
    print("running:", " ".join(cmd), flush=True)
    return subprocess.call(cmd, env=env, cwd=str(Path(a.harness).parent))


if __name__ == "__main__":
    sys.exit(main())
