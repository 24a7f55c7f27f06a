"""Continue personalized training on a lent GPU inside a fixed wall-clock budget, and bring the result back small.

    OUT=/path python benchmarks/personalized/gpu_train.py --labels .labels --budget-s 480 [--init-model personalized-v10]
        [--config benchmarks/personalized/configs/synth2_heads.json] [--batch-size 8] [--shape 96] [--device cuda]

Made for short GPU loans (minutes of device time; see the device tool's README). The shipped weights are the
starting point (`init_model`, matching tensors), so nothing but the repository and a label folder made by
`python -m multimodalgen.synthesis.prepare_labels` has to travel (carry it as an ignored path, e.g. `.labels`).

1. calibration: `--calibration-steps` steps in a scratch run measure seconds per step at this batch and shape;
2. training: `steps` is set so the cosine schedule ends inside the remaining budget (`max_seconds` stops it anyway,
   with a checkpoint), synth-2 subjects are rendered on the GPU;
3. the trip back: `$OUT/personalized_gpu.pt` (network + config + step + data-engine version, fp32, no optimiser
   state), `$OUT/train_log.jsonl` and `$OUT/personalized-gpu/` (the exported model folder with its card). Evaluate it
   here with `benchmarks/personalized/real_heads.py --models <folder>,personalized-v10` (after `refine_select.py
   --model <folder>` to choose its refinement settings) before shipping anything.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "MultiModalGen"))


def main() -> int:
    from multimodalgen.models.registry import DEFAULT_MODELS
    from multimodalgen.synthesis.head import MAX_OFFSET_MM

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--labels", required=True, help="prepared label folder (prepare_labels output)")
    p.add_argument("--config", default=str(REPO / "benchmarks/personalized/configs/synth2_heads.json"))
    p.add_argument("--init-model", default=DEFAULT_MODELS["personalized"])
    p.add_argument("--budget-s", type=float, default=480.0, help="wall-clock seconds for all three phases")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--shape", type=int, default=96, help="training crop edge in voxels (multiple of 16)")
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--p-template", type=float, default=0.6, help="share of template-like subjects (personalized-v5 "
                   "was trained with .6; .85 was worse, results/real_heads_2026-12-04_v5-candidates.txt)")
    p.add_argument("--max-offset-mm", type=float, default=MAX_OFFSET_MM, help="crop centres within this many mm "
                   "of the brain centre per axis (personalized-v5: 25, personalized-v6 and v7: 60; the 2 mm sliding "
                   "windows on a whole head are centred up to ~48 mm from it: benchmarks/personalized/README.md, "
                   "'Continuing personalized-v5 has plateaued; where the windows fall')")
    p.add_argument("--template-brain-share", type=float, default=0.0,
                   help="SPM's brain rule for the classes of template-like subjects (synth-2.4; 0 = plain argmax; "
                        "benchmarks/personalized/README.md, 'SPM's brain rule for template subjects')")
    p.add_argument("--calibration-steps", type=int, default=6)
    p.add_argument("--device", default="cuda")
    p.add_argument("--out", default=os.environ.get("OUT", "gpu_train_out"))
    a = p.parse_args()
    t_start = time.perf_counter()
    import torch

    from multimodalgen.personalized.export import export_run
    from multimodalgen.personalized.train import TrainConfig, train

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    base = json.loads(Path(a.config).read_text())
    base.update({"label_dir": str(Path(a.labels).resolve()), "init_model": a.init_model, "batch_size": a.batch_size,
                 "shape": [a.shape] * 3, "lr": a.lr, "p_template": a.p_template,
                 "max_offset_mm": a.max_offset_mm, "template_brain_share": a.template_brain_share,
                 "checkpoint_every": 50,
                 "log_every": 10})
    base["model"]["patch_size"] = max(int(base["model"].get("patch_size") or 0), a.shape)
    print(f"device {a.device}: {torch.cuda.get_device_name(0) if a.device.startswith('cuda') else 'cpu'}", flush=True)
    scratch = Path("/tmp/gpu_train_calibration")
    shutil.rmtree(scratch, ignore_errors=True)
    t = time.perf_counter()
    train(TrainConfig.from_dict({**base, "steps": a.calibration_steps + 1, "checkpoint_every": 10_000}), scratch,
          a.device, resume=False, max_seconds=None)
    per_step = (time.perf_counter() - t) / (a.calibration_steps + 1)
    left = a.budget_s - (time.perf_counter() - t_start) - 45.0          # export and copy margin
    steps = max(1, int(left / per_step))
    print(f"calibration: {per_step:.2f} s/step at batch {a.batch_size}, {a.shape}^3; training {steps} steps",
          flush=True)
    run = Path("/tmp/gpu_train_run")
    shutil.rmtree(run, ignore_errors=True)
    cfg = TrainConfig.from_dict({**base, "steps": steps})
    train(cfg, run, a.device, resume=False, max_seconds=left)
    state = torch.load(run / "last.pt", map_location="cpu", weights_only=True)
    torch.save({k: state[k] for k in ("model", "config", "step", "synth_version")}, out / "personalized_gpu.pt")
    shutil.copy(run / "train_log.jsonl", out / "train_log.jsonl")
    export_run(run, out / "personalized-gpu", name="personalized-gpu",
               history=f"continued from {a.init_model} on {a.device} for {state['step']} steps "
                       f"(batch {a.batch_size}, {a.shape}^3, lr {a.lr}) by benchmarks/personalized/gpu_train.py")
    print(f"done: {state['step']} steps in {time.perf_counter() - t_start:.0f} s; files in {out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
