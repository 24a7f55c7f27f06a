"""Run the reference few-shot harness with MultiModalGen beside the baselines, in one run, and print the table.

    python benchmarks/fewshot/run_benchmark.py [--methods copy,mci,rw,rf] [--k 1,3,5] [--cases SUBSTR,...]
                                               [--out benchmarks/fewshot/results] [--threads 2] [--encoder auto]

It calls `/work/shared/bench/fewshot/run.py --set dev` (or `--harness DIR`) with
`--tool "<venv>/bin/multimodalgen --progress none --threads 2 fewshot {images} --annotations {annotations}
--out {out}" --tool-name multimodalgen`; the harness writes `results.csv` and `table.md` into `--out` and prints
the table, which this script prints again at the end together with the acceptance checks of issue 6.
Harness dependencies: `pip install -r /work/shared/bench/requirements.txt`.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_HARNESS = Path("/work/shared/bench/fewshot")
TOOL = "multimodalgen"


def tool_template(threads: int, encoder: str) -> str:
    exe = Path(sys.executable).with_name("multimodalgen")
    return (f"{exe} --progress none --threads {threads} fewshot {{images}} --annotations {{annotations}} "
            f"--out {{out}} --encoder {encoder}")


def acceptance(rows: list[dict]) -> list[str]:
    """The issue's accuracy targets, checked on the results (only for the methods present)."""
    def mean(method, k):
        vals = [float(r["dice_unannotated"] or 0) for r in rows if r["method"] == method and r["k"] == str(k)]
        return sum(vals) / len(vals) if vals else None

    baselines = sorted({r["method"] for r in rows} - {TOOL})
    lines = []
    for k in (1, 3, 5):
        ours = mean(TOOL, k)
        if ours is None:
            continue
        best = max(((mean(b, k) or 0.0, b) for b in baselines), default=(None, None))
        lines.append(f"K={k}: {TOOL} {ours:.3f}" + (f" vs best baseline {best[1]} {best[0]:.3f} "
                                                     f"(margin {ours - best[0]:+.3f})" if best[1] else ""))
    if "mci" in baselines:
        worst = []
        for r in rows:
            if r["method"] != TOOL or int(r["k"]) < 3:
                continue
            m = next((x for x in rows if x["method"] == "mci" and x["case"] == r["case"] and x["k"] == r["k"]), None)
            if m is not None:
                worst.append((float(r["dice_unannotated"] or 0) - float(m["dice_unannotated"] or 0), r["case"], r["k"]))
        if worst:
            d, case, k = min(worst)
            lines.append(f"worst case vs mci at K>=3: {d:+.3f} ({case}, K={k}); target >= -0.02: "
                         f"{'met' if d >= -0.02 else 'MISSED'}")
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--harness", default=str(DEFAULT_HARNESS))
    ap.add_argument("--set", default="dev")
    ap.add_argument("--k", default="1,3,5")
    ap.add_argument("--methods", default="copy,mci,rw,rf")
    ap.add_argument("--cases", default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--encoder", choices=("auto", "on", "off"), default="off")
    ap.add_argument("--out", default=str(HERE / "results"))
    a = ap.parse_args(argv)
    cmd = [sys.executable, str(Path(a.harness) / "run.py"), "--set", a.set, "--k", a.k, "--methods", a.methods,
           "--tool", tool_template(a.threads, a.encoder), "--tool-name", TOOL, "--out", a.out]
    if a.cases:
        cmd += ["--cases", a.cases]
    env = dict(os.environ, ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS=str(a.threads))
    print("+", " ".join(cmd), flush=True)
    code = subprocess.call(cmd, cwd=a.harness, env=env)
    table = Path(a.out) / "table.md"
    if table.exists():
        print(table.read_text())
        rows = list(csv.DictReader(open(Path(a.out) / "results.csv")))
        for line in acceptance(rows):
            print(line)
    return code


if __name__ == "__main__":
    sys.exit(main())
