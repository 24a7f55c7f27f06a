"""Quick in-process evaluation of the few-shot engine on the reference harness's cached cases (development aid).

Runs `multimodalgen.fewshot.engine.fit_predict` on every case and K of the harness cache (made by
`/work/shared/bench/fewshot/run.py`) without starting a process per run, and prints Dice on the non-annotated
slices (the harness's headline metric, same definition). Configuration overrides as `key=value` (FewShotConfig
fields, e.g. `tau_per_mm=0.2 use_head=False`). The official numbers come from `run_benchmark.py`.

    python benchmarks/fewshot/eval_inprocess.py [--cache DIR] [--cases a,b] [--k 1,3,5] [key=value ...]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "MultiModalGen"))


def dice(a, b):
    s = a.sum() + b.sum()
    return 1.0 if s == 0 else float(2 * np.logical_and(a, b).sum() / s)


def parse_overrides(items):
    out = {}
    for item in items:
        key, value = item.split("=", 1)
        out[key] = {"True": True, "False": False}.get(value, None)
        if out[key] is None:
            out[key] = float(value) if "." in value or "e" in value else int(value)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "fewshot_bench_cache" / "dev"))
    ap.add_argument("--cases", default="")
    ap.add_argument("--k", default="1,3,5")
    ap.add_argument("--encoder", default="off")
    ap.add_argument("--encoder-name", default="encoder-v2", help="shipped encoder NAME[:GROUP], e.g. encoder-v4:tissue")
    ap.add_argument("--encoder-checkpoint", default=None, help="use this encoder training checkpoint (last.pt) "
                    "for the encoder features (compare with / without the encoder before weights are shipped)")
    ap.add_argument("overrides", nargs="*")
    a = ap.parse_args(argv)
    import dataclasses

    import torch

    from multimodalgen.fewshot.annotations import find_annotations
    from multimodalgen.fewshot.engine import FewShotConfig, fit_predict
    from multimodalgen.fewshot.features import FeatureConfig, FeatureSource
    from multimodalgen.io import read_volume

    torch.set_num_threads(2)
    overrides = parse_overrides(a.overrides)
    head_keys = {"hidden", "layers", "steps", "batch", "lr", "noise", "gain", "dropout", "weight_decay"}
    from multimodalgen.fewshot.head import HeadConfig

    head = HeadConfig(**{k: v for k, v in overrides.items() if k in head_keys})
    from multimodalgen.fewshot.extend import ExtendConfig

    extend = ExtendConfig(**{k[7:]: v for k, v in overrides.items() if k.startswith("extend.")})
    config = FewShotConfig(features=FeatureConfig(encoder=a.encoder, encoder_name=a.encoder_name), head=head, extend=extend,
                           **{k: v for k, v in overrides.items() if k not in head_keys and not k.startswith("extend.")})
    model = None
    if a.encoder_checkpoint:
        from multimodalgen.encoder.network import UNet3D, UNetConfig

        state = torch.load(a.encoder_checkpoint, map_location="cpu", weights_only=True)
        net = dict(state["config"]["network"])
        net["widths"] = tuple(net["widths"])
        model = UNet3D(UNetConfig(**net)).eval()
        model.load_state_dict(state["model"])
        print(f"encoder checkpoint {a.encoder_checkpoint} step {state.get('step')}", flush=True)
    ks = [int(k) for k in a.k.split(",")]
    results: dict[int, list[float]] = {k: [] for k in ks}
    for case in sorted(Path(a.cache).iterdir()):
        if a.cases and not any(s in case.name for s in a.cases.split(",")):
            continue
        info = json.loads((case / "case.json").read_text())
        vols = [read_volume(case / f"image_{n}.nii.gz", n if n in ("CT", "T1", "T2", "PD") else None)
                for n in info["channels"]]
        truth = read_volume(case / "truth.nii.gz").array > 0
        axis = 2 - int(info["slice_axis"])
        source = FeatureSource(np.stack([v.array for v in vols]), vols[0].affine,
                               [v.modality for v in vols], config.features, encoder_model=model)
        row = []
        for k in ks:
            annotated = info["annotated"][str(k)]
            extent = int(truth.any(axis=tuple(x for x in range(3) if x != axis)).sum())
            if extent < k + 2:
                row.append("   -  ")
                continue
            ann = read_volume(case / f"annotations_k{k}.nii.gz").array
            t0 = time.perf_counter()
            annotations = find_annotations(ann, vols[0].affine, axis=axis)
            result = fit_predict(source, annotations, config, seed=0)
            secs = time.perf_counter() - t0
            keep = np.ones(truth.shape[axis], bool)
            keep[annotated] = False
            ix = [slice(None)] * 3
            ix[axis] = keep
            d = dice(result.labels[tuple(ix)] > 0, truth[tuple(ix)])
            results[k].append(d)
            row.append(f"{d:.3f} ({secs:.1f}s)")
        print(f"{case.name:<26} " + "  ".join(row), flush=True)
    print("mean".ljust(27) + "  ".join(f"K={k}: {np.mean(v):.3f}" for k, v in results.items() if v))
    print("config", json.dumps({k: v for k, v in dataclasses.asdict(config).items()
                                if k not in ("features", "head")}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
