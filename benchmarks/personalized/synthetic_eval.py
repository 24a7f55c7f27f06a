"""Synthetic part of the personalized benchmark: held-out subjects, all 7 modality subsets, five models.

Models (all trained by `multimodalgen.personalized.train` with the same step budget, same seeds, same data):
    xh_prior   -- X_h = masked mean + learnable prior (random modality dropout)
    xh_prior+TTP -- the same with test-time personalization (label-free, on the subject's present modalities)
    xh_noprior -- X_h without the prior
    single     -- the same network trained on one random modality at a time; subsets by late fusion (mean of the
                  single-modality softmaxes)
    concat     -- early fusion: channel concatenation, zero-filled missing channels, same modality dropout
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from multimodalgen.personalized.evaluate import (all_subsets, dice_per_class, predict, predict_subsets,
                                                 present_mask)
from multimodalgen.personalized.synthetic import sample_subject
from multimodalgen.personalized.train import EVAL_SEED_BASE, TrainConfig, build_model, train
from multimodalgen.personalized.ttp import personalize

RUNS = ("xh_prior", "xh_noprior", "single", "concat")


def run_configs(steps: int, init_encoder: str | None, seed: int = 1) -> dict[str, TrainConfig]:
    """The four training runs (same budget)."""
    from multimodalgen.personalized.config import PersonalizedConfig

    base = dict(steps=steps, shape=(32, 32, 32), seed=seed, init_encoder=init_encoder, checkpoint_every=20)
    return {"xh_prior": TrainConfig(**base),
            "xh_noprior": TrainConfig(**base, model=PersonalizedConfig(prior=False), w_prior=0.0),
            "single": TrainConfig(**base, subset="single"),
            "concat": TrainConfig(**base, kind="concat")}


def load_run(cfg: TrainConfig, folder: Path) -> torch.nn.Module:
    """Train (or resume / reuse a finished run in `folder`) and return the model in eval mode."""
    ckpt = folder / "last.pt"
    if ckpt.is_file() and int(torch.load(ckpt, map_location="cpu", weights_only=True)["step"]) >= cfg.steps:
        model = build_model(cfg)
        model.load_state_dict(torch.load(ckpt, map_location="cpu", weights_only=True)["model"])
        return model.eval()
    return train(cfg, folder)


def evaluate_synthetic(work: Path, steps: int, init_encoder: str | None, n_subjects: int, ttp_steps: int,
                       log=print, runs: tuple[str, ...] = RUNS, prefix: str = "run_") -> dict:
    """Dice (mean over foreground classes, then over subjects) per model and subset. `runs` must include
    "xh_prior"; run folders are `work / (prefix + name)`."""
    cfgs = {k: v for k, v in run_configs(steps, init_encoder).items() if k in runs}
    models = {name: load_run(cfg, work / f"{prefix}{name}") for name, cfg in cfgs.items()}
    modalities = cfgs["xh_prior"].model.modalities
    subsets = all_subsets(modalities)
    names = [n for n in ("xh_prior", "xh_prior+TTP", "xh_noprior", "single", "concat")
             if n in runs or n == "xh_prior+TTP"]
    scores = {n: {"+".join(s): [] for s in subsets} for n in names}
    ttp_seconds = []
    for i in range(n_subjects):
        images, labels = sample_subject(EVAL_SEED_BASE + i, (32, 32, 32), modalities)
        x, y = images[None], labels
        probs = {name: predict_subsets(models[name], x, subsets, modalities, late_fusion=(name == "single"))
                 for name in cfgs}
        for s in subsets:
            key = "+".join(s)
            present = present_mask(s, modalities)
            adapted, sec = personalize(models["xh_prior"], x, present, steps=ttp_steps)
            ttp_seconds.append(sec)
            probs.setdefault("xh_prior+TTP", {})[key] = predict(adapted, x, present)
            for name in names:
                pred = probs[name][key].argmax(1)[0]
                scores[name][key].append(float(np.nanmean(dice_per_class(pred, y, 4))))
        log(f"  synthetic subject {i + 1}/{n_subjects} done")
    table = {n: {k: float(np.mean(v)) for k, v in per.items()} for n, per in scores.items()}
    return {"subsets": ["+".join(s) for s in subsets], "dice": table, "n_subjects": n_subjects,
            "train_steps": steps, "ttp_steps": ttp_steps, "ttp_seconds_mean": float(np.mean(ttp_seconds)),
            "eval_seeds": [EVAL_SEED_BASE, EVAL_SEED_BASE + n_subjects - 1]}


def format_synthetic(res: dict) -> str:
    subsets = res["subsets"]
    lines = [f"Synthetic held-out subjects (n={res['n_subjects']}, seeds {res['eval_seeds'][0]}..), "
             f"{res['train_steps']} training steps each; mean foreground Dice",
             f"{'model':<14}" + "".join(f"{s:>10}" for s in subsets) + f"{'worst':>8}{'all-worst':>10}"]
    for name, per in res["dice"].items():
        vals = [per[s] for s in subsets]
        lines.append(f"{name:<14}" + "".join(f"{v:10.3f}" for v in vals)
                     + f"{min(vals):8.3f}{per[subsets[-1]] - min(vals):10.3f}")
    lines.append(f"TTP: {res['ttp_steps']} steps, {res['ttp_seconds_mean']:.2f} s per subject-subset (CPU)")
    return "\n".join(lines)


if __name__ == "__main__":
    import argparse

    p = argparse.ArgumentParser()
    p.add_argument("--work", default="/work/ckpt/personalized")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--init-encoder", default="/work/ckpt/personalized/encoder_init.pt")
    p.add_argument("--n-subjects", type=int, default=6)
    p.add_argument("--ttp-steps", type=int, default=5)
    p.add_argument("--runs", default=",".join(RUNS))
    p.add_argument("--prefix", default="run_")
    p.add_argument("--out", default=None)
    a = p.parse_args()
    torch.set_num_threads(1)
    t0 = time.time()
    r = evaluate_synthetic(Path(a.work), a.steps, a.init_encoder, a.n_subjects, a.ttp_steps,
                           runs=tuple(a.runs.split(",")), prefix=a.prefix)
    r["seconds"] = round(time.time() - t0, 1)
    if a.out:
        Path(a.out).write_text(json.dumps(r, indent=2))
    print(format_synthetic(r))
