"""Personalized multimodal segmentation benchmark: prints every table in one run.

    .venv/bin/python benchmarks/personalized/run.py [--data ../shared/data] [--work /work/ckpt/personalized]
        [--steps 200] [--n-subjects 6] [--ttp-steps 5] [--ft-steps 60] [--crop 32] [--skip-synthetic]
        [--skip-real] [--skip-timing] [--out results.json]

Synthetic: see `synthetic_eval.py` (trains the four runs in --work with the same budget, or reuses finished ones).
Real: see `real_eval.py` (needs the shipped personalized-v2 model or --base-model). Targets (issue 7): worst-subset
Dice within 0.02 of all-modalities for X_h while concat drops >= 0.05; TTP gain > 0; MoR within 0.01 Dice of full
fine-tuning with <= 2 % of the parameters; adapter file <= 1 MB; fine-tuning 5 cases of 128^3 <= 5 min on CPU.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from real_eval import evaluate_real, format_real, time_five_cases  # noqa: E402
from synthetic_eval import evaluate_synthetic, format_synthetic  # noqa: E402


def targets(syn: dict | None, real: dict | None, timing: dict | None) -> list[str]:
    lines = ["Targets:"]
    if syn:
        d, last = syn["dice"], syn["subsets"][-1]
        gap = {n: d[n][last] - min(d[n].values()) for n in d}
        lines.append(f"  X_h worst-subset gap {gap['xh_prior']:.3f} (target <= 0.02): "
                     f"{'MET' if gap['xh_prior'] <= 0.02 else 'MISSED'}; concat gap {gap['concat']:.3f} "
                     f"(target >= 0.05): {'MET' if gap['concat'] >= 0.05 else 'MISSED'}")
        ttp = np.mean(list(d["xh_prior+TTP"].values())) - np.mean(list(d["xh_prior"].values()))
        lines.append(f"  TTP mean gain {ttp:+.4f} (target > 0): {'MET' if ttp > 0 else 'MISSED'}")
    if real:
        m = real["methods"]
        mor, full = np.mean(list(m["mor"]["dice"].values())), np.mean(list(m["full"]["dice"].values()))
        frac = m["mor"]["fraction_of_base"]
        lines.append(f"  MoR - full = {mor - full:+.3f} Dice (target >= -0.01): {'MET' if mor - full >= -0.01 else 'MISSED'}"
                     f"; MoR params {100 * frac:.2f} % of base (target <= 2 %): {'MET' if frac <= 0.02 else 'MISSED'}")
        size = m["mor"]["adapter_bytes"]
        lines.append(f"  MoR adapter file {size / 1e3:.1f} kB (target <= 1 MB): {'MET' if size <= 1e6 else 'MISSED'}")
    if timing:
        projected = timing["seconds_per_step"] * 150
        lines.append(f"  5 cases of 128^3: {timing['seconds']} s for {timing['steps']} steps; default 150 steps "
                     f"-> ~{projected:.0f} s (target <= 300 s): {'MET' if projected <= 300 else 'MISSED'}")
    return lines


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(Path(__file__).resolve().parents[3] / "shared" / "data"))
    p.add_argument("--work", default="/work/ckpt/personalized")
    p.add_argument("--init-encoder", default="/work/ckpt/personalized/encoder_init.pt")
    p.add_argument("--base-model", default="personalized-v2")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--n-subjects", type=int, default=6)
    p.add_argument("--ttp-steps", type=int, default=5)
    p.add_argument("--ft-steps", type=int, default=60)
    p.add_argument("--crop", type=int, default=32)
    p.add_argument("--timing-steps", type=int, default=10)
    p.add_argument("--skip-synthetic", action="store_true")
    p.add_argument("--skip-real", action="store_true")
    p.add_argument("--skip-timing", action="store_true")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=None)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    work = Path(a.work)
    syn = real = timing = None
    t0 = time.time()
    if not a.skip_synthetic:
        syn = evaluate_synthetic(work, a.steps, a.init_encoder, a.n_subjects, a.ttp_steps)
        print(format_synthetic(syn), flush=True)
    if not a.skip_real:
        real = evaluate_real(Path(a.data) / "spm_templates", work, a.base_model, a.ft_steps, a.crop)
    if not a.skip_timing:
        timing = time_five_cases(a.timing_steps, 48, a.base_model)
    if real:
        print(format_real(real, timing), flush=True)
    print("\n".join(targets(syn, real, timing)))
    print(f"(benchmark wall time {time.time() - t0:.0f} s, {a.threads} thread(s), shared 2-core CPU)")
    if a.out:
        Path(a.out).write_text(json.dumps({"synthetic": syn, "real": real, "timing": timing}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
