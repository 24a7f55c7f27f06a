"""How a model's intensity-refinement setting is chosen (`personalized.refine`): variants side by side, one run.

    .venv/bin/python benchmarks/personalized/refine_select.py [--data ../shared/data] [--model personalized-v5] [--variants "A;B"]

The CSF shell (`PersonalizedConfig.csf_shell_mm`, `--csf-shell-mm`) runs after the refinement in the variants that
name it. The prior power is a per-model setting (`PersonalizedConfig.refine_prior_power`, set at export with
`--refine-prior-power`, `--refine-init`); the given model's own setting always runs (under its row's name when
it is one of the listed variants, else as "model's setting"). The network runs as the model is configured (with
`mirror_lr`, mirrored).

For each variant: SPM oldnorm and avg152 (T1/T2/PD, 2 mm, every non-empty subset; mean Dice over grey/white/CSF
against oldseg, as `real_heads.py`) and Colin27 (1 mm; grey matter vs the AAL union inside ch2bet) with the
grey/white/CSF volumes in mL. The network runs once per input (`refine="none"`); each variant refines the same
probabilities. Development data only (evaluation, never training).
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from real_heads import CLASSES, cropped_upper, dice_by_name, truth_labels  # noqa: E402

VARIANTS = {
    "network only": None,
    "all classes, p^.3, 2 G, network start": dict(classes=None, prior_power=.3, components=2, init="network"),
    "tissues, p^.3, 2 G, network start": dict(classes=(1, 2, 3), prior_power=.3, components=2, init="network"),
    "tissues, p^.5, 2 G, cluster start": dict(classes=(1, 2, 3), prior_power=.5, components=2, init="clusters"),
    "tissues, p^.3, 2 G, cluster start": dict(classes=(1, 2, 3), prior_power=.3, components=2, init="clusters"),
    "tissues, p^.3, 2 G, both starts": dict(classes=(1, 2, 3), prior_power=.3, components=2, init="both"),
    "tissues, p^.5, 2 G, both starts": dict(classes=(1, 2, 3), prior_power=.5, components=2, init="both"),
    "tissues, p^.7, 2 G, both starts": dict(classes=(1, 2, 3), prior_power=.7, components=2, init="both"),
    "tissues, p^1, 2 G, both starts": dict(classes=(1, 2, 3), prior_power=1.0, components=2, init="both"),
    "tissues, p^.7, 2 G, cluster start": dict(classes=(1, 2, 3), prior_power=.7, components=2, init="clusters"),
    "tissues, p^.3, 1 G, both starts": dict(classes=(1, 2, 3), prior_power=.3, components=1, init="both"),
    "grey/white only, p^.3, 2 G, both starts": dict(classes=(1, 2), prior_power=.3, components=2, init="both"),
    "grey/white only, p^.3, 2 G, network start": dict(classes=(1, 2), prior_power=.3, components=2, init="network"),
}
# the CSF shell after the refinement (`personalized.csf_shell`; PersonalizedConfig.csf_shell_mm), on the v9 setting
for _mm in (2.0, 3.0, 3.5, 4.5):
    VARIANTS[f"tissues, p^.5, 2 G, cluster start, shell {_mm:g} mm"] = dict(
        classes=(1, 2, 3), prior_power=.5, components=2, init="clusters", shell_mm=_mm)



def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(Path(__file__).resolve().parents[3] / "shared" / "data"))
    p.add_argument("--model", default="personalized-v5")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--quick", action="store_true", help="only the network alone and the model's own setting (to compare "
                   "models quickly)")
    p.add_argument("--variants", default=None, help="semicolon-separated variant names to run (default: all); the "
                   "network alone always runs")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    from multimodalgen.io import read_volume
    from multimodalgen.personalized.csf_shell import close_csf_shell
    from multimodalgen.personalized.inference import segment_volumes
    from multimodalgen.personalized.prepare import stack_images
    from multimodalgen.personalized.refine import refine_with_intensities
    from multimodalgen.personalized.tissue_contrast import brightness_matrix
    from multimodalgen.personalized.weights import load_model

    model = load_model(a.model)[0]
    setting = dict(classes=(1, 2, 3), prior_power=model.config.refine_prior_power, components=2,
                   init=model.config.refine_init)
    if model.config.csf_shell_mm:
        setting["shell_mm"] = model.config.csf_shell_mm
    listed = [n for n, v in VARIANTS.items() if v == setting]     # run a setting once, even when it is the model's
    own = listed[0] if listed else (f"model's setting: tissues, p^{setting['prior_power']:g}, 2 G, "
                                    f"{setting['init']} start" + (f", shell {setting['shell_mm']:g} mm"
                                                                  if setting.get("shell_mm") else ""))
    VARIANTS[own] = setting
    if a.quick:
        for name in [n for n in VARIANTS if n not in ("network only", own)]:
            del VARIANTS[name]
    if a.variants:
        keep = set(a.variants.split(";")) | {"network only", own}
        unknown = keep - set(VARIANTS)
        if unknown:
            p.error(f"unknown variants {sorted(unknown)}; known: {list(VARIANTS)}")
        for name in set(VARIANTS) - keep:
            del VARIANTS[name]
    names = dict(enumerate(model.config.labels))
    spm = Path(a.data) / "spm_templates"
    truth, _ = truth_labels(spm)

    def variants(images: dict, subset) -> dict[str, np.ndarray]:
        _, probs = segment_volumes(images, model=model, return_probabilities=True, refine="none")
        spacing = probs.spacing
        array, present, _ = stack_images(images, model.config.modalities, ct_window=model.config.ct_window)
        x, prob = torch.from_numpy(array[present]), torch.from_numpy(probs.array)
        out = {}
        for name, setting in VARIANTS.items():
            if setting is None:
                out[name] = prob.argmax(0).numpy()
                continue
            setting = dict(setting)
            shell_mm = setting.pop("shell_mm", 0.0)
            group = setting["classes"] or tuple(range(len(names)))
            bright = brightness_matrix(list(subset), [names[c] for c in group])
            refined = refine_with_intensities(prob, x, brightness=bright, **setting)
            out[name] = close_csf_shell(refined, model.config.labels, spacing, shell_mm)[0].argmax(0).numpy()
        return out

    scores: dict = {name: {} for name in VARIANTS}
    for prefix, pattern in (("oldnorm", "oldnorm_{}.nii.gz"), ("avg152", "avg152{}.nii.gz")):
        images = {m: read_volume(spm / pattern.format(m), m) for m in ("T1", "T2", "PD")}
        for r in (1, 2, 3):
            for subset in itertools.combinations(("T1", "T2", "PD"), r):
                for name, labels in variants({m: images[m] for m in subset}, subset).items():
                    d = dice_by_name(labels, names, truth.array)
                    scores[name].setdefault(prefix, []).append(float(np.mean([d[c] for c in CLASSES])))
    # the robustness row the v4-v8 setting is worst on (real_heads.py): oldnorm T1 cropped to its upper 60 %
    cropped, truth_cropped = cropped_upper(read_volume(spm / "oldnorm_T1.nii.gz", "T1"), truth.array)
    for name, labels in variants({"T1": cropped}, ("T1",)).items():
        d = dice_by_name(labels, names, truth_cropped)
        scores[name]["cropped"] = float(np.mean([d[c] for c in CLASSES]))
    colin = Path(a.data) / "colin27_mricron"
    t1 = read_volume(colin / "ch2.nii.gz", "T1")
    bet = read_volume(colin / "ch2bet.nii.gz").array > 0
    gm_truth = (read_volume(colin / "aal.nii.gz").array > 0) & bet
    voxel_ml = abs(float(np.linalg.det(t1.affine[:3, :3]))) / 1e3
    for name, labels in variants({"T1": t1}, ("T1",)).items():
        pred = (labels == 1) & bet
        scores[name]["colin"] = float(2 * (pred & gm_truth).sum() / (pred.sum() + gm_truth.sum()))
        scores[name]["ml"] = np.bincount(labels.ravel(), minlength=4)[1:4] * voxel_ml
    print(f"model {a.model}; mean Dice grey/white/CSF over 7 subsets (worst); oldnorm T1 cropped to its upper 60 %; "
          "Colin27 GM Dice vs AAL; Colin27 mL")
    print(f"{'variant':<58}{'oldnorm':>16}{'avg152':>16}{'cropped':>9}{'Colin GM':>10}   GM / WM / CSF mL")
    for name, s in scores.items():
        print(f"{name:<58}{np.mean(s['oldnorm']):9.3f} ({min(s['oldnorm']):.3f}){np.mean(s['avg152']):9.3f} "
              f"({min(s['avg152']):.3f}){s['cropped']:9.3f}{s['colin']:10.3f}   "
              + " / ".join(f"{v:.0f}" for v in s["ml"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
