"""Encoder invariance benchmark on the aligned SPM multi-contrast templates (real data, evaluation only).

    python benchmarks/encoder/run_benchmark.py [--data ../shared/data] [--encoder DIR | --checkpoint CKPT]
        [--out benchmarks/encoder/results] [--threads 2] [--skip-timing]

Rows: raw intensities, MIND-SSC (radius 1, dilation 2), the encoder network with random weights, the trained
encoder (shipped folder, or a training checkpoint). Columns:
    match_avg152 / match_oldnorm: cross-contrast voxel matching (T1<->T2, T1<->PD, T2<->PD, both directions)
        top-1 nearest descriptor within a 13^3 search cube within 2 voxels of the truth (chance ~0.015);
    probe_T1/T2/PD_*: GM/WM/CSF logistic regression trained on T1 descriptors, balanced accuracy on held-out
        voxels of T1 (in-domain), T2 and PD (cross-contrast). Tissue truth = argmax of oldseg grey/white/csf > 0.5.
Also: engine throughput (samples/s at 96^3), a PNG grid of engine samples, feature extraction time on 128^3
and peak memory / time on 256^3 (subprocess). Writes results.json, table.md, engine_samples.png under --out.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "MultiModalGen"))
sys.path.insert(0, str(HERE))

from heldout_contrasts import HELDOUT, render_heldout  # noqa: E402
from invariance import match_rate, probe_scores, sample_voxels, standardize, tissue_labels  # noqa: E402

SETS = {"avg152": ("avg152T1", "avg152T2", "avg152PD"), "oldnorm": ("oldnorm_T1", "oldnorm_T2", "oldnorm_PD")}
CONTRASTS = ("T1", "T2", "PD")


def load_data(data_dir: Path) -> dict:
    """Normalised images per set/contrast, brain mask and tissue labels (all on the 2 mm grid)."""
    from multimodalgen.intensity import normalize
    from multimodalgen.io import read_volume

    folder = data_dir / "spm_templates"
    images = {}
    for set_name, files in SETS.items():
        for contrast, stem in zip(CONTRASTS, files):
            vol = read_volume(folder / f"{stem}.nii.gz", modality=contrast)
            images[(set_name, contrast)] = normalize(vol.array.astype(np.float32), contrast)
            affine = vol.affine
    tissues = [_unit(read_volume(folder / f"oldseg_{t}.nii.gz").array.astype(np.float32))
               for t in ("grey", "white", "csf")]
    labels = tissue_labels(*tissues)
    brain = (tissues[0] + tissues[1] + tissues[2]) > 0.5
    head = images[("avg152", "T1")] > 0.15
    heldout = {name: render_heldout(name, np.stack(tissues), head) for name in HELDOUT}
    return {"images": images, "labels": labels, "brain": brain, "affine": affine, "heldout": heldout}


def _unit(prob: np.ndarray) -> np.ndarray:
    """Tissue probabilities in [0, 1] whether the reader applied the NIfTI scaling (0..1) or not (0..255)."""
    return prob / 255.0 if prob.max() > 1.5 else prob


def descriptor_fns(args) -> dict:
    """name -> function(image (I,J,K) float32) -> (C, I, J, K) float32."""
    import torch

    from multimodalgen.encoder.inference import extract_features, fold_batchnorm
    from multimodalgen.encoder.network import UNet3D, UNetConfig
    from multimodalgen.features.mind import mind_ssc

    trained, label = load_trained(args)
    torch.manual_seed(0)
    random_net = UNet3D(UNetConfig(**{**trained.config.to_dict(), "widths": tuple(trained.config.widths)})).eval()
    trained = fold_batchnorm(trained)
    return {
        "raw intensity": lambda im: im[None].astype(np.float32),
        "MIND-SSC (r1, d2)": lambda im: mind_ssc(im, radius=1, dilation=2),
        "random-init network": lambda im: extract_features(im, random_net, "cpu"),
        label: lambda im: extract_features(im, trained, "cpu"),
    }


def load_trained(args):
    """(model, row label) from --checkpoint (training checkpoint) or --encoder (shipped folder, default)."""
    import torch

    from multimodalgen.encoder.network import UNet3D, UNetConfig
    from multimodalgen.encoder.weights import load_encoder

    if args.checkpoint:
        state = torch.load(args.checkpoint, map_location="cpu", weights_only=True)
        model = UNet3D(UNetConfig.from_dict(state["config"]["network"]))
        model.load_state_dict(state["model"])
        return model.eval(), f"encoder (checkpoint step {state['step']})"
    return load_encoder(args.encoder), f"encoder ({Path(args.encoder).name if args.encoder else 'shipped'})"


def evaluate(data: dict, fns: dict, n_points: int, seed: int) -> list[dict]:
    rows = []
    brain, labels = data["brain"], data["labels"]
    for name, fn in fns.items():
        row = {"method": name}
        t0 = time.perf_counter()
        for set_name in SETS:
            desc = {c: standardize(fn(data["images"][(set_name, c)]), brain) for c in CONTRASTS}
            rng = np.random.default_rng(seed)
            pts = sample_voxels(brain, n_points, rng, margin=2)
            rates = [match_rate(desc[a], desc[b], pts) for a in CONTRASTS for b in CONTRASTS if a != b]
            row[f"match_{set_name}"] = float(np.mean(rates))
            if set_name == "avg152":      # held-out contrasts are rendered on this set's grid and tissue maps
                desc.update({h: standardize(fn(data["heldout"][h]), brain) for h in HELDOUT})
            probe = probe_scores(desc["T1"], desc, labels, np.random.default_rng(seed))
            for c in CONTRASTS:
                row[f"probe_{c}_{set_name}"] = probe[c]
            if set_name == "avg152":
                for h in HELDOUT:
                    row[f"probe_{h}_heldout"] = probe[h]
        row["seconds"] = round(time.perf_counter() - t0, 1)
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def engine_outputs(out: Path, threads: int) -> dict:
    """Engine throughput at 96^3 and a PNG grid of samples (label map + 2 views, middle slice)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from multimodalgen.synthesis.config import ENGINE_VERSION, EngineConfig, LabelConfig
    from multimodalgen.synthesis.views import measure_throughput, render_sample, sample_params

    # throughput with the mix used to train encoder-v2 (60 % layered phantoms), at 96^3
    rate = measure_throughput(EngineConfig(shape=(96, 96, 96), labels=LabelConfig(p_layered=0.6)), n_samples=6,
                              device="cpu")
    plain = EngineConfig(shape=(96, 96, 96), n_views=3)
    layered = EngineConfig(shape=(96, 96, 96), n_views=3,
                           labels=LabelConfig(p_layered=1.0, p_foreground_mask=1.0, mask_radius=(0.6, 1.0)))
    fig, axes = plt.subplots(4, 4, figsize=(8, 8))
    for r in range(4):
        p = sample_params(plain if r < 2 else layered, 1000 + r)
        images, labels = render_sample(p)
        axes[r, 0].imshow(labels[0, :, :, 48].numpy(), cmap="tab20", interpolation="nearest")
        kind = "layered" if p.labels.layer_bounds is not None else "ensemble"
        axes[r, 0].set_title(f"{kind} labels ({int(labels.max()) + 1})", fontsize=7)
        for v in range(3):
            axes[r, v + 1].imshow(images[v, :, :, 48].numpy(), cmap="gray", vmin=0, vmax=1)
            axes[r, v + 1].set_title(f"view {v + 1}: {p.appearances[v].mode}", fontsize=7)
    for ax in axes.flat:
        ax.axis("off")
    fig.suptitle(f"synthesis engine {ENGINE_VERSION}: label map + 3 random views (96^3, middle slice); rows 1-2 "
                 "random ensembles, rows 3-4 layered phantoms", fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "engine_samples.png", dpi=80)
    plt.close(fig)
    return {"engine_version": ENGINE_VERSION, "engine_samples_per_s_96 (p_layered 0.6)": round(rate, 3),
            "engine_threads": threads}


_TIMING_CHILD = r"""
import json, sys, time
import numpy as np, torch
sys.path.insert(0, sys.argv[1])
sys.path.insert(0, sys.argv[6])
from peak_memory import own_peak_rss_mb  # VmHWM: this process only (ru_maxrss would include the parent at spawn)
torch.set_num_threads(int(sys.argv[2]))
from multimodalgen.encoder.inference import extract_features, fold_batchnorm
from multimodalgen.encoder.network import UNet3D, UNetConfig
from multimodalgen.encoder.weights import load_encoder
model = fold_batchnorm(load_encoder(sys.argv[3] or None)) if sys.argv[3] != "-" else fold_batchnorm(UNet3D(UNetConfig(**json.loads(sys.argv[4]))).eval())
size = int(sys.argv[5])
img = np.random.default_rng(0).random((size,) * 3, dtype=np.float32)
if size <= 128:
    extract_features(img, model)  # warm-up
    times = []
    for _ in range(3):
        t0 = time.perf_counter(); extract_features(img, model); times.append(time.perf_counter() - t0)
    print(json.dumps({"seconds": sorted(times)[1]}))
else:
    base = own_peak_rss_mb()
    t0 = time.perf_counter(); f = extract_features(img, model, patch=128, overlap=0.25); dt = time.perf_counter() - t0
    peak = own_peak_rss_mb()
    print(json.dumps({"seconds": dt, "peak_rss_mb": peak, "increase_mb": peak - base,
                      "output_mb": f.nbytes / 2**20}))
"""


def timing(args, network_cfg: dict) -> dict:
    """Feature extraction time (128^3, median of 3) and time + peak RSS (256^3), each in a fresh process."""
    enc = "-" if args.checkpoint else (args.encoder or "")
    out = {}
    for size in (128, 256):
        res = subprocess.run([sys.executable, "-c", _TIMING_CHILD, str(REPO / "MultiModalGen"), str(args.threads),
                              enc, json.dumps(network_cfg), str(size), str(HERE.parent)],
                             capture_output=True, text=True, check=True)
        r = json.loads(res.stdout.strip().splitlines()[-1])
        if size == 128:
            out["features_128_seconds"] = round(r["seconds"], 3)
        else:
            out["features_256_seconds"] = round(r["seconds"], 2)
            out["features_256_peak_rss_mb"] = round(r["peak_rss_mb"], 1)
            out["features_256_rss_increase_mb"] = round(r["increase_mb"], 1)
            out["features_256_output_mb"] = round(r["output_mb"], 1)
    out["timing_threads"] = args.threads
    return out


def write_table(rows: list[dict], extra: dict, out: Path) -> str:
    cols = [k for k in rows[0] if k not in ("method", "seconds")]
    lines = ["| method | " + " | ".join(cols) + " |", "|---|" + "---:|" * len(cols)]
    for r in rows:
        lines.append(f"| {r['method']} | " + " | ".join(f"{r[c]:.3f}" for c in cols) + " |")
    lines.append("")
    lines += [f"- {k}: {v}" for k, v in extra.items()]
    text = "\n".join(lines) + "\n"
    (out / "table.md").write_text(text)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument("--encoder", default=None, help="shipped encoder folder or name (default: encoder-v2)")
    parser.add_argument("--checkpoint", default=None, help="evaluate a training checkpoint instead")
    parser.add_argument("--out", default=str(HERE / "results"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--points", type=int, default=1500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-timing", action="store_true", help="only the invariance table")
    parser.add_argument("--trained-only", action="store_true",
                        help="score only the encoder row (quick checkpoint comparisons; implies --skip-timing)")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = load_data(Path(args.data))
    fns = descriptor_fns(args)
    trained_label = list(fns)[-1]
    if args.trained_only:
        fns = {trained_label: fns[trained_label]}
    rows = evaluate(data, fns, args.points, args.seed)
    extra: dict = {}
    if not (args.skip_timing or args.trained_only):
        extra.update(engine_outputs(out, args.threads))
        model, _ = load_trained(args)
        extra.update(timing(args, {**model.config.to_dict()}))
    cols = [k for k in rows[0] if k not in ("method", "seconds")]
    result = {"trained_row": trained_label, "columns": cols, "rows": rows, "timings": extra,
              "probe_cross_mean": float(np.mean([rows[-1][f"probe_{c}_{s}"] for c in ("T2", "PD") for s in SETS])),
              "probe_heldout_min": float(min(rows[-1][f"probe_{h}_heldout"] for h in HELDOUT)),
              "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    (out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    print(write_table(rows, extra, out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
