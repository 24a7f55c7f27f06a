"""Verb `demo --out-dir D`: run every available engine on the shipped sample data, write results and PNGs.

Steps (each engine adds its own as it lands; a missing engine is reported plainly, never faked):
1. I/O and geometry: read every sample, print its geometry, resample to 1 mm, write overlays.
2. Encoder features (needs shipped encoder weights).
3. Registration: T2-like moving head onto the T1 head; the transform is checked against the known motion.
4. Few-shot segmentation: 3 painted slices of the brain1 tumour -> 3D, Dice on the unpainted slices.
5. Personalized segmentation: tissues from T1 + the registered T2-like head (shipped base model).
A `summary.json` lists each step's status, outputs, timings and metrics.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import numpy as np

from multimodalgen.cli.output import print_result
from multimodalgen.io import read_label, read_volume, write_json, write_volume
from multimodalgen.volume import Volume


def sample_data_dir() -> Path:
    """Folder of the shipped sample data (`MultiModalGen/Resources/SampleData`)."""
    return Path(__file__).resolve().parents[1] / "Resources" / "SampleData"


def add_parser(subparsers) -> None:
    demo = subparsers.add_parser("demo", help="run every available engine on the shipped sample data")
    demo.add_argument("--out-dir", required=True, help="folder for results and PNG overlays (created)")
    demo.add_argument("--sample-dir", default=None, help="sample data folder (default: the shipped one)")
    demo.set_defaults(handler=run)


def step_io(samples: Path, out: Path, ctx) -> dict:
    """Read each sample, report geometry, resample the T1 to 1 mm, write overlays."""
    from multimodalgen.figures import Outline, save_slices_figure
    from multimodalgen.resample import resample_isotropic
    from multimodalgen.volume import describe

    t1 = read_volume(samples / "colin27_T1_2mm.nii.gz", "T1")
    mr = read_volume(samples / "brain1_MR.nrrd", "T1")
    tumour = read_label(samples / "brain1_tumour.seg.nrrd")
    info = {name: describe(v) for name, v in (("colin27_T1", t1), ("brain1_MR", mr), ("brain1_tumour", tumour))}
    for name, d in info.items():
        print(f"  {name:<14} shape {d['shape']} spacing {d['spacing_mm']} mm orientation {d['orientation']}")
    t1_1mm = resample_isotropic(t1, 1.0)
    write_volume(t1_1mm, out / "io" / "colin27_T1_1mm.nii.gz")
    save_slices_figure(out / "io" / "brain1_tumour.png", mr, title="brain1 MR with its tumour segmentation",
                       caption=f"Case brain1 (shipped sample): MR {_grid(mr)} with the shipped tumour segmentation "
                       f"({int((tumour.array > 0).sum())} voxels).",
                       outlines=[Outline(tumour, "shipped segmentation")])
    save_slices_figure(out / "io" / "colin27_T1.png", t1, title="Colin27 T1 (2 mm)",
                       caption=f"Case Colin27 T1 (shipped sample, {_grid(t1)}), read and described; also resampled "
                       f"to 1 mm ({'x'.join(str(s) for s in t1_1mm.shape3d)} voxels).")
    return {"outputs": ["io/colin27_T1_1mm.nii.gz", "io/brain1_tumour.png", "io/colin27_T1.png"],
            "metrics": {"resampled_shape": list(t1_1mm.shape3d)}}


def _grid(volume: Volume) -> str:
    """"127x150x13 voxels of 0.78x0.78x6.5 mm" for captions."""
    return (f"{'x'.join(str(s) for s in volume.shape3d)} voxels of "
            f"{'x'.join(f'{s:.2g}' for s in volume.spacing)} mm")


def step_features(samples: Path, out: Path, ctx) -> dict | str:
    from multimodalgen.encoder.inference import features_for_volume
    from multimodalgen.encoder.weights import load_encoder
    from multimodalgen.figures import save_slices_figure
    from multimodalgen.models.registry import list_models

    if not any(e.kind == "encoder" for e in list_models()):
        return "no shipped encoder weights found under Resources/Models"
    t1 = read_volume(samples / "colin27_T1_2mm.nii.gz", "T1")
    model = load_encoder(device=ctx.device)
    features = features_for_volume(t1, model=model, device=ctx.device)
    write_volume(features.with_array(features.array.astype(np.float32)), out / "features" / "colin27_T1_features.nii.gz")
    save_slices_figure(out / "features" / "colin27_T1_feature0.png", features.channel(0),
                       title="encoder feature channel 0 of Colin27 T1",
                       caption=f"Case Colin27 T1: channel 0 of the {features.n_channels}-channel encoder feature map "
                       "(unitless), on the image's grid.")
    return {"outputs": ["features/colin27_T1_features.nii.gz", "features/colin27_T1_feature0.png"],
            "metrics": {"channels": features.n_channels}}


#: The sample pair's known fixed->moving motion (RAS mm); see SampleData/build_sample_data.py `known_motion`.
SAMPLE_MOTION_ANGLE_DEG = 4.0
SAMPLE_MOTION_TRANSLATION_MM = (5.0, -3.0, 4.0)


def sample_known_motion() -> np.ndarray:
    """4x4 RAS matrix: where the fixed sample's anatomy point x sits in the moving sample (rotation about R-L)."""
    angle = np.deg2rad(SAMPLE_MOTION_ANGLE_DEG)
    motion = np.eye(4)
    motion[1:3, 1:3] = [[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]
    motion[:3, 3] = SAMPLE_MOTION_TRANSLATION_MM
    return motion


def transform_error_mm(transform_path: Path, fixed: Volume, truth_ras: np.ndarray, n_points: int = 500) -> dict:
    """Mean / max distance (mm) between the ITK transform (LPS, fixed->moving) and the true RAS motion at head
    voxels of the fixed image (independent check through SimpleITK's reader)."""
    import SimpleITK as sitk

    transform = sitk.ReadTransform(str(transform_path))
    idx = np.argwhere(fixed.array > np.percentile(fixed.array, 60))
    idx = idx[np.random.default_rng(0).choice(len(idx), size=min(n_points, len(idx)), replace=False)]
    ras = (fixed.affine[:3, :3] @ idx.T).T + fixed.affine[:3, 3]
    flip = np.array([-1.0, -1.0, 1.0])
    found = np.array([transform.TransformPoint(tuple(float(v) for v in p * flip)) for p in ras]) * flip
    expected = ras @ truth_ras[:3, :3].T + truth_ras[:3, 3]
    error = np.linalg.norm(found - expected, axis=1)
    return {"transform_error_mean_mm": round(float(error.mean()), 3),
            "transform_error_max_mm": round(float(error.max()), 3),
            "identity_error_mean_mm": round(float(np.linalg.norm(ras - expected, axis=1).mean()), 3)}


def step_registration(samples: Path, out: Path, ctx) -> dict | str:
    from multimodalgen.verbs import RunContext, run_verb

    fixed_path = samples / "colin27_T1_2mm.nii.gz"
    result = run_verb("register", {"fixed": str(fixed_path), "moving": str(samples / "colin27_T2like_moved_2mm.nii.gz"),
                                   "mode": "deformable", "preset": "fast"}, out / "registration",
                      RunContext(ctx.device_name, ctx.progress))
    report = result.metrics
    metrics = transform_error_mm(out / "registration" / "transform.h5", read_volume(fixed_path, "T1"),
                                 sample_known_motion())
    metrics.update({k: report.get(k) for k in ("similarity_before", "similarity_after") if k in report})
    return {"outputs": sorted(str(p.relative_to(out)) for p in (out / "registration").iterdir()),
            "metrics": metrics}


def step_fewshot(samples: Path, out: Path, ctx) -> dict | str:
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
    mask = np.ones(truth.shape3d, bool)
    index = [slice(None)] * 3
    for s in chosen:
        index[axis] = s
        mask[tuple(index)] = False
    p, t = predicted.array[mask] > 0, truth.array[mask] > 0
    dice = float(2 * (p & t).sum() / max(1, p.sum() + t.sum()))
    from multimodalgen.figures import Outline, save_slices_figure
    from multimodalgen.figures.draw import PAINTED_COLOUR, REFERENCE_COLOUR

    save_slices_figure(out / "fewshot" / "tumour_3d.png", image, title="few-shot: 3 painted slices -> 3D tumour",
                       caption=f"Case brain1 MR: tumour segmented from {len(chosen)} painted slices (voxel axis "
                       f"{'ijk'[axis]} = {', '.join(str(s) for s in chosen)}); Dice on the unpainted slices "
                       f"{dice:.3f} against the shipped segmentation (reference).",
                       outlines=[Outline(predicted.with_array((predicted.array > 0).astype(np.uint8)),
                                         "few-shot result", (255, 60, 60)),
                                 Outline(truth.with_array((truth.array > 0).astype(np.uint8)), "reference",
                                         REFERENCE_COLOUR),
                                 Outline(truth.with_array((annotations > 0).astype(np.uint8)), "painted",
                                         PAINTED_COLOUR, painted=True)])
    return {"outputs": ["fewshot/painted_slices.nii.gz", "fewshot/tumour_3d.nii.gz", "fewshot/tumour_3d.png"],
            "metrics": {"painted_slices": chosen, "dice_unpainted_slices": round(dice, 4)}}


def step_personalized(samples: Path, out: Path, ctx) -> dict | str:
    """Segment CSF/GM/WM from the T1 plus the registered T2-like head (any subset works), with the base model."""
    warped = out / "registration" / "warped.nii.gz"
    if not warped.is_file():
        return "needs the registration step's warped.nii.gz (registration did not run)"
    from multimodalgen.models.registry import list_models
    from multimodalgen.figures import Outline, save_slices_figure
    from multimodalgen.personalized import segment_volumes
    from multimodalgen.personalized.driver import label_segments

    if not any(e.kind == "personalized" for e in list_models()):
        return "no shipped personalized model found under Resources/Models"
    t1 = read_volume(samples / "colin27_T1_2mm.nii.gz", "T1")
    t2 = read_volume(warped, "T2")
    labels = segment_volumes({"T1": t1, "T2": t2}, None, device=ctx.device, progress=ctx.progress)
    write_volume(labels, out / "personalized" / "tissues_T1_T2.nii.gz")
    counts = {int(v): int(n) for v, n in zip(*np.unique(labels.array, return_counts=True))}
    labels.metadata["segments"] = label_segments(labels)
    measured = (labels.metadata.get("quality") or {}).get("volumes_ml") or {}    # personalized.quality, in mL
    volumes = ", ".join(f"{name} {ml:.0f} ml" for name, ml in measured.items())
    save_slices_figure(out / "personalized" / "tissues_T1_T2.png", t1,
                       title="personalized segmentation from T1 + registered T2-like",
                       caption=f"Case Colin27: tissues from T1 + the registered T2-like head, shipped base model "
                       f"{labels.metadata.get('base_model') or 'personalized'} (no adapter); volumes {volumes}. "
                       f"{warning_text(labels)}No reference for this case; on real heads personalized-v10 with the "
                       "default intensity refinement scores mean Dice .63 over grey/white/CSF (SPM oldnorm) and .76 "
                       "for grey matter on Colin27 (benchmarks/personalized/results).",
                       outlines=[Outline(labels, "tissue")])
    quality = labels.metadata.get("quality") or {}
    return {"outputs": ["personalized/tissues_T1_T2.nii.gz", "personalized/tissues_T1_T2.png"],
            "metrics": {"voxels_per_label": counts, "warnings": quality.get("warnings", [])}}


def warning_text(labels) -> str:
    """The plausibility warnings of a segmentation (`personalized.quality`) as caption text ("" when none)."""
    warnings = (labels.metadata.get("quality") or {}).get("warnings") or []
    return "".join(f"Warning: {w} " for w in warnings)


STEPS: list[tuple[str, Callable]] = [
    ("io", step_io),
    ("features", step_features),
    ("registration", step_registration),
    ("fewshot", step_fewshot),
    ("personalized", step_personalized),
]


def _sentence(summary: dict, out: Path) -> str:
    """The demo's success sentence: what it wrote where, and each engine's headline number."""
    steps = summary["steps"]
    done = [name for name, step in steps.items() if step["status"] == "done"]
    figures = sorted(p for step in steps.values() for p in step.get("outputs", []) if str(p).endswith(".png"))
    numbers = []
    registration = steps.get("registration", {}).get("metrics", {})
    if "transform_error_mean_mm" in registration:
        numbers.append(f"registration error {registration['transform_error_mean_mm']:.2f} mm mean vs the known "
                       f"motion (identity {registration['identity_error_mean_mm']:.1f} mm)")
    fewshot = steps.get("fewshot", {}).get("metrics", {})
    if "dice_unpainted_slices" in fewshot:
        numbers.append(f"few-shot Dice {fewshot['dice_unpainted_slices']:.3f} on the unpainted slices")
    return (f"demo: wrote the results of {len(done)}/{len(steps)} steps ({', '.join(done)}) and {len(figures)} "
            f"figures to {out}" + (f" ({'; '.join(numbers)})" if numbers else "") + "; summary.json lists every "
            "step.")


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
                 _sentence(summary, out))
    return 0
