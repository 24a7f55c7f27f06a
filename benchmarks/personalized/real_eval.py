"""Real-data part of the personalized benchmark (SPM templates, MNI space, 2 mm).

Fine-tune on oldnorm T1/T2/PD (smoothed templates) with labels from oldseg CSF/GM/WM (argmax of the three tissue
maps where the largest is >= 0.5, else background; values 1 CSF, 2 GM, 3 WM = the model's label set), then test on
avg152 T1/T2/PD (unsmoothed ICBM152 averages, another contrast set) against the same labels, for all 7 subsets.
Methods: base model without adapter, MoR adapter, plain LoRA (one rank), full fine-tuning -- same steps and crops.
Everything runs at the model's working spacing (`PersonalizedConfig.working_spacing`); Dice is computed on the
native 2 mm label grid after resampling the probabilities back.
Also: adapter size, fine-tuning time on CPU, and the time of MoR fine-tuning on 5 synthetic 128^3 cases.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from multimodalgen.io import read_volume, write_label, write_volume
from multimodalgen.personalized.evaluate import all_subsets, dice_per_class
from multimodalgen.volume import Volume

MODALITIES = ("T1", "T2", "PD")


def make_labels(spm: Path) -> Volume:
    """CSF/GM/WM label map (1/2/3) from the oldseg tissue probability maps."""
    maps = [read_volume(spm / f"oldseg_{t}.nii.gz") for t in ("csf", "grey", "white")]
    stack = np.stack([m.array for m in maps])
    labels = np.where(stack.max(0) >= 0.5, stack.argmax(0) + 1, 0).astype(np.uint8)
    return Volume(labels, maps[0].affine, "LABEL")


def write_cases_csv(spm: Path, work: Path) -> tuple[Path, Volume]:
    """Training CASES.csv (one case: oldnorm T1/T2/PD + label) in `work`; returns (csv, label volume)."""
    work.mkdir(parents=True, exist_ok=True)
    labels = make_labels(spm)
    write_label(labels, work / "oldseg_labels.nii.gz")
    for m in MODALITIES:
        write_volume(read_volume(spm / f"oldnorm_{m}.nii.gz", m), work / f"oldnorm_{m}.nii.gz")
    csv = work / "cases.csv"
    csv.write_text("case,T1,T2,PD,label\noldnorm,oldnorm_T1.nii.gz,oldnorm_T2.nii.gz,oldnorm_PD.nii.gz,"
                   "oldseg_labels.nii.gz\n")
    return csv, labels


def evaluate_model(model, spm: Path, labels: Volume, ttp_steps: int = 0) -> dict[str, float]:
    """Mean foreground Dice on avg152 for every subset (each modality encoded once; with `ttp_steps`, only the
    all-modalities subset, after test-time personalization on it)."""
    from multimodalgen.personalized.evaluate import predict_subsets
    from multimodalgen.personalized.prepare import model_input, stack_images, to_image_grid

    images = {m: read_volume(spm / f"avg152{m}.nii.gz", m) for m in MODALITIES}
    array, _, reference = stack_images(images, model.config.modalities)
    x, size, native = model_input(array, reference.spacing, model.config)
    target = torch.from_numpy(labels.array.astype(np.int64))
    subsets = all_subsets(MODALITIES)
    if ttp_steps:
        from multimodalgen.personalized.ttp import personalize

        subsets = subsets[-1:]
        model, _ = personalize(model, x, torch.ones(1, 3, dtype=torch.bool), steps=ttp_steps)
    probs = predict_subsets(model, x, subsets, model.config.modalities)
    out = {}
    for key, p in probs.items():
        pred = to_image_grid(p, size, native).argmax(1)[0]
        out[key] = float(np.nanmean(dice_per_class(pred, target, 4)))
    return out


def evaluate_real(spm: Path, work: Path, base_model: str, steps: int, crop: int, log=print) -> dict:
    from multimodalgen.adapters.inject import count_adapter_parameters
    from multimodalgen.personalized.finetune import FinetuneConfig, finetune
    from multimodalgen.personalized.inference import load_with_adapter

    csv, labels = write_cases_csv(spm, work / "real_data")
    base, _ = load_with_adapter(None, base_model)
    n_base = sum(p.numel() for p in base.parameters())
    results = {"base (no adapter)": {"dice": evaluate_model(base, spm, labels)}}
    log("  base model evaluated")
    for method in ("mor", "lora", "full"):
        out = work / f"adapter_{method}"
        cfg = FinetuneConfig(method=method, steps=steps, crop=crop, val_fraction=0.0, lr=3e-3 if method != "full"
                             else 1e-3)
        t0 = time.perf_counter()
        finetune(csv, out, cfg, base_model=base_model)
        seconds = time.perf_counter() - t0
        model, _ = load_with_adapter(out, base_model)
        size = sum(p.stat().st_size for p in out.iterdir() if p.is_file())
        n_trainable = count_adapter_parameters(model) + sum(p.numel() for p in model.seg_head[-1].parameters()) \
            if method != "full" else n_base  # same label set: adapters + the head's final classifier are tuned
        results[method] = {"dice": evaluate_model(model, spm, labels), "finetune_seconds": round(seconds, 1),
                           "adapter_bytes": size, "trainable_params": int(n_trainable),
                           "fraction_of_base": n_trainable / n_base}
        log(f"  {method}: fine-tuned in {seconds:.0f} s, evaluated")
    results["mor+TTP"] = {"dice": evaluate_model(load_with_adapter(work / "adapter_mor", base_model)[0], spm,
                                                 labels, ttp_steps=5)}
    return {"methods": results, "subsets": ["+".join(s) for s in all_subsets(MODALITIES)], "steps": steps,
            "crop": crop, "base_params": n_base}


def time_five_cases(steps: int, crop: int, base_model: str | None = None, size: int = 128) -> dict:
    """MoR fine-tuning time on 5 synthetic cases of size^3 at 1 mm (in memory), `steps` steps of `crop`^3 crops
    at the model's working spacing."""
    from multimodalgen.personalized.cases import LoadedCase
    from multimodalgen.personalized.finetune import FinetuneConfig, finetune_cases
    from multimodalgen.personalized.synthetic import sample_subject
    from multimodalgen.personalized.weights import load_model

    base, _ = load_model(base_model)
    cases = []
    for i in range(5):
        images, labels = sample_subject(800_000_000 + i, (size, size, size), MODALITIES)
        # 1 mm voxels, as a 128^3 clinical crop would have; the model resamples to its working spacing
        cases.append(LoadedCase(f"s{i}", images.numpy(), np.ones(3, bool), labels.numpy(), (1.0, 1.0, 1.0)))
    cfg = FinetuneConfig(steps=steps, crop=crop, val_fraction=0.2, val_every=steps)
    t0 = time.perf_counter()
    _, record = finetune_cases(base, cases, base.config.labels, cfg)
    seconds = time.perf_counter() - t0
    return {"cases": 5, "size": size, "steps": steps, "crop": crop, "seconds": round(seconds, 1),
            "seconds_per_step": round(seconds / steps, 2), "val_dice": record["best_val_dice"]}


def format_real(res: dict, timing: dict | None) -> str:
    subsets = res["subsets"]
    lines = [f"Real: fine-tuned on SPM oldnorm T1/T2/PD + oldseg labels, tested on avg152 T1/T2/PD "
             f"({res['steps']} steps, crops {res['crop']}^3); mean Dice over CSF/GM/WM",
             f"{'method':<18}" + "".join(f"{s:>10}" for s in subsets) + f"{'mean':>8}{'time s':>9}{'size kB':>9}"
             f"{'params':>9}{'% base':>8}"]
    for name, r in res["methods"].items():
        vals = [r["dice"].get(s, float("nan")) for s in subsets]
        extra = (f"{r['finetune_seconds']:9.0f}{r['adapter_bytes'] / 1e3:9.1f}{r['trainable_params']:9d}"
                 f"{100 * r['fraction_of_base']:8.2f}") if "finetune_seconds" in r else ""
        lines.append(f"{name:<18}" + "".join(f"{v:10.3f}" for v in vals) + f"{np.nanmean(vals):8.3f}" + extra)
    if timing:
        lines.append(f"MoR fine-tuning on {timing['cases']} synthetic {timing['size']}^3 cases: {timing['steps']} "
                     f"steps of {timing['crop']}^3 crops + validation in {timing['seconds']} s "
                     f"({timing['seconds_per_step']} s/step)")
    return "\n".join(lines)
