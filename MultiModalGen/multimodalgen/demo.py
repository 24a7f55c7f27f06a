"""Verb `demo --out-dir D`: run every available engine on the shipped sample data, write results and PNGs.

Steps (each engine adds its own as it lands; a missing engine is reported plainly, never faked):
1. I/O and geometry: read every sample, print its geometry, resample to 1 mm, write overlays.
2. Encoder features (needs shipped encoder weights).
3. Registration: T2-like moving head onto the T1 head (MIND / encoder features).
4. Few-shot segmentation: 3 painted slices of the brain1 tumour -> 3D, Dice on the unpainted slices.
A `summary.json` lists each step's status, outputs, timings and metrics.
"""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path
from typing import Callable

import numpy as np

from multimodalgen.cli.output import print_result
from multimodalgen.io import read_label, read_volume, write_json, write_volume


def sample_data_dir() -> Path:
    """Folder of the shipped sample data (`MultiModalGen/Resources/SampleData`)."""
    return Path(__file__).resolve().parents[1] / "Resources" / "SampleData"


def add_parser(subparsers) -> None:
    demo = subparsers.add_parser("demo", help="run every available engine on the shipped sample data")
    demo.add_argument("--out-dir", required=True, help="folder for results and PNG overlays (created)")
    demo.add_argument("--sample-dir", default=None, help="sample data folder (default: the shipped one)")
    demo.set_defaults(handler=run)


def _available(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def step_io(samples: Path, out: Path, ctx) -> dict:
    """Read each sample, report geometry, resample the T1 to 1 mm, write overlays."""
    from multimodalgen.resample import resample_isotropic
    from multimodalgen.visualize import save_overlay_png
    from multimodalgen.volume import describe

    t1 = read_volume(samples / "colin27_T1_2mm.nii.gz", "T1")
    mr = read_volume(samples / "brain1_MR.nrrd", "T1")
    tumour = read_label(samples / "brain1_tumour.seg.nrrd")
    info = {name: describe(v) for name, v in (("colin27_T1", t1), ("brain1_MR", mr), ("brain1_tumour", tumour))}
    for name, d in info.items():
        print(f"  {name:<14} shape {d['shape']} spacing {d['spacing_mm']} mm orientation {d['orientation']}")
    t1_1mm = resample_isotropic(t1, 1.0)
    write_volume(t1_1mm, out / "io" / "colin27_T1_1mm.nii.gz")
    save_overlay_png(out / "io" / "brain1_tumour.png", mr, tumour, "brain1 MR with its tumour segmentation")
    save_overlay_png(out / "io" / "colin27_T1.png", t1, None, "Colin27 T1 (2 mm)")
    return {"outputs": ["io/colin27_T1_1mm.nii.gz", "io/brain1_tumour.png", "io/colin27_T1.png"],
            "metrics": {"resampled_shape": list(t1_1mm.shape3d)}}


def step_features(samples: Path, out: Path, ctx) -> dict | str:
    if not _available("multimodalgen.encoder.inference"):
        return "the foundation encoder is not in this build yet"
    from multimodalgen.encoder.inference import features_for_volume, load_encoder
    from multimodalgen.models.registry import list_models
    from multimodalgen.visualize import save_overlay_png

    if not any(e.kind == "encoder" for e in list_models()):
        return "no shipped encoder weights found under Resources/Models"
    t1 = read_volume(samples / "colin27_T1_2mm.nii.gz", "T1")
    model = load_encoder(device=ctx.device)
    features = features_for_volume(t1, model=model, device=ctx.device)
    write_volume(features.with_array(features.array.astype(np.float32)), out / "features" / "colin27_T1_features.nii.gz")
    save_overlay_png(out / "features" / "colin27_T1_feature0.png", features.channel(0), None,
                     "encoder feature channel 0")
    return {"outputs": ["features/colin27_T1_features.nii.gz", "features/colin27_T1_feature0.png"],
            "metrics": {"channels": features.n_channels}}


def step_registration(samples: Path, out: Path, ctx) -> dict | str:
    if not _available("multimodalgen.registration"):
        return "the registration engine is not in this build yet"
    from multimodalgen.registration import register_files

    result = register_files(fixed=samples / "colin27_T1_2mm.nii.gz", moving=samples / "colin27_T2like_moved_2mm.nii.gz",
                            out_dir=out / "registration", mode="deformable", preset="fast",
                            device=ctx.device, progress=ctx.progress)
    report = result if isinstance(result, dict) else getattr(result, "report", {})
    return {"outputs": sorted(str(p.relative_to(out)) for p in (out / "registration").iterdir()),
            "metrics": {k: report.get(k) for k in ("similarity_before", "similarity_after", "seconds")
                        if isinstance(report, dict) and k in report}}


def step_fewshot(samples: Path, out: Path, ctx) -> dict | str:
    if not _available("multimodalgen.fewshot"):
        return "the few-shot segmentation engine is not in this build yet"
    from multimodalgen.fewshot import segment_from_slices

    image = read_volume(samples / "brain1_MR.nrrd", "T1")
    truth = read_label(samples / "brain1_tumour.seg.nrrd")
    axis = int(np.argmax(image.spacing))
    present = np.nonzero(truth.array.any(axis=tuple(a for a in range(3) if a != axis)))[0]
    chosen = sorted({int(present[int(round(q * (len(present) - 1)))]) for q in (0.1, 0.5, 0.9)})
    annotations = np.zeros_like(truth.array)
    index = [slice(None)] * 3
    for s in chosen:
        index[axis] = s
        annotations[tuple(index)] = truth.array[tuple(index)]
    (out / "fewshot").mkdir(parents=True, exist_ok=True)
    write_volume(truth.with_array(annotations), out / "fewshot" / "painted_slices.nii.gz")
    predicted = segment_from_slices([image], truth.with_array(annotations), axis=axis, device=ctx.device,
                                    progress=ctx.progress)
    write_volume(predicted, out / "fewshot" / "tumour_3d.nii.gz")
    from multimodalgen.visualize import save_overlay_png

    save_overlay_png(out / "fewshot" / "tumour_3d.png", image, predicted, "few-shot: 3 painted slices -> 3D")
    mask = np.ones(truth.shape3d, bool)
    index = [slice(None)] * 3
    for s in chosen:
        index[axis] = s
        mask[tuple(index)] = False
    p, t = predicted.array[mask] > 0, truth.array[mask] > 0
    dice = float(2 * (p & t).sum() / max(1, p.sum() + t.sum()))
    return {"outputs": ["fewshot/painted_slices.nii.gz", "fewshot/tumour_3d.nii.gz", "fewshot/tumour_3d.png"],
            "metrics": {"painted_slices": chosen, "dice_unpainted_slices": round(dice, 4)}}


STEPS: list[tuple[str, Callable]] = [
    ("io", step_io),
    ("features", step_features),
    ("registration", step_registration),
    ("fewshot", step_fewshot),
]


def run(args, ctx) -> int:
    samples = Path(args.sample_dir) if args.sample_dir else sample_data_dir()
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary: dict = {"sample_data": str(samples), "steps": {}}
    for n, (name, step) in enumerate(STEPS):
        ctx.progress.update("demo", n / len(STEPS), name)
        print(f"[{n + 1}/{len(STEPS)}] {name}", flush=True)
        start = time.perf_counter()
        result = step(samples, out, ctx)
        seconds = round(time.perf_counter() - start, 2)
        if isinstance(result, str):
            print(f"  not available: {result}", flush=True)
            summary["steps"][name] = {"status": "not available", "reason": result}
        else:
            print(f"  done in {seconds} s: {result.get('metrics', {})}", flush=True)
            summary["steps"][name] = {"status": "done", "seconds": seconds, **result}
    ctx.progress.update("demo", 1.0, "done")
    write_json(summary, out / "summary.json")
    print_result(args, {"out_dir": str(out), "steps": {k: v["status"] for k, v in summary["steps"].items()}},
                 f"demo outputs in {out} (summary.json lists every step)")
    return 0
