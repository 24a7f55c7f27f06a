"""Evaluate a training checkpoint on the invariance benchmark and ship it if it beats the shipped encoder.

    python benchmarks/encoder/export_best.py --checkpoint /work/ckpt/encoder/run2/step_0000500.pt
        [--name encoder-v1] [--baseline NAME] [--stages stages.json] [--device-trained TEXT]
        [--models-dir MultiModalGen/Resources/Models] [--force]

"Beats" = higher mean cross-contrast linear-probe balanced accuracy (T2 and PD, avg152 and oldnorm) than the
encoder `--baseline` (default: the folder `--name` itself when it exists). The benchmark results of the exported
checkpoint are embedded in config.json and MODEL_CARD.md. `--stages` is a JSON list
`[{"checkpoint": ..., "device": ..., "note": ...}, ...]` (oldest first, the last one = --checkpoint) for weights
trained in several continued runs (see `multimodalgen.encoder.weights.export_weights`).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "MultiModalGen"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--models-dir", default=str(REPO / "MultiModalGen" / "Resources" / "Models"))
    parser.add_argument("--name", default="encoder-v1")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--baseline", default=None, help="shipped encoder to beat (default: --name's folder)")
    parser.add_argument("--stages", default=None, help="JSON list of training stages (see the module docstring)")
    parser.add_argument("--device-trained", default="cpu (2 shared cores)")
    parser.add_argument("--results", default=None, help="reuse this run_benchmark results.json instead of running")
    parser.add_argument("--force", action="store_true", help="export even if not better")
    args = parser.parse_args(argv)
    ckpt = Path(args.checkpoint)
    if args.results:
        result = json.loads(Path(args.results).read_text())
    else:
        out = Path("/tmp") / f"encoder_bench_{ckpt.stem}"
        subprocess.run([sys.executable, str(HERE / "run_benchmark.py"), "--checkpoint", str(ckpt), "--skip-timing",
                        "--threads", str(args.threads), "--out", str(out)], check=True)
        result = json.loads((out / "results.json").read_text())
    target = Path(args.models_dir) / args.name
    baseline = Path(args.models_dir) / (args.baseline or args.name)
    previous, old_timings = None, {}
    if (baseline / "config.json").is_file():
        old_metrics = json.loads((baseline / "config.json").read_text()).get("metrics", {})
        previous = old_metrics.get("probe_cross_mean")
        old_timings = old_metrics.get("timings", {})
    same_architecture = False
    if (baseline / "config.json").is_file():
        import torch

        network = torch.load(ckpt, map_location="cpu", weights_only=True)["config"]["network"]
        from multimodalgen.encoder.network import UNetConfig

        same_architecture = (UNetConfig.from_dict(json.loads((baseline / "config.json").read_text())["network"])
                             == UNetConfig.from_dict(network))
    if not result.get("timings") and old_timings and same_architecture:
        # timings depend on the architecture and engine only, not on the weights: keep the last measured ones
        result["timings"] = {**old_timings, "note": "timings measured on the previous export (same architecture)"}
    score = result["probe_cross_mean"]
    print(json.dumps({"checkpoint": str(ckpt), "probe_cross_mean": score, "shipped": previous}))
    if args.force or previous is None or score > previous:
        from multimodalgen.encoder.weights import export_weights

        stages = json.loads(Path(args.stages).read_text()) if args.stages else None
        if stages and Path(stages[-1]["checkpoint"]).resolve() != ckpt.resolve():
            raise SystemExit("--stages must end with the --checkpoint being exported")
        info = export_weights(ckpt, target, args.name, metrics=result, device_trained=args.device_trained,
                              stages=stages)
        print(json.dumps({"exported": str(target), "step": info["step"], "sha256": info["sha256"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
