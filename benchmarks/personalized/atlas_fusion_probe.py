"""Diagnostic (not a product path): a personalized model's output probabilities fused with SPM's TPM after the fact.

    .venv/bin/python benchmarks/personalized/atlas_fusion_probe.py [--model personalized-v10] [--data ../shared/data]
        [--weights 0.5,1] [--threads 1]

For oldnorm and avg152 (MNI space; truth = oldseg as in `real_heads.py`) and the subsets T1, T2, PD, T1+T2+PD:
mean Dice grey/white/CSF of the model's labels; of argmax(log p_model + w log p_TPM) for each w, after the fact
("after"); and of the model's own pipeline with the network's probabilities multiplied by p_TPM^w before its
intensity refinement and CSF shell ("inside", the way SPM's unified segmentation uses its atlas). The TPM is resampled
onto the case's grid, its classes mapped air -> background, bone -> skull, +1e-3 so no class is impossible.
Colin27 (1 mm T1, an individual brain): grey-matter Dice against the AAL union inside `ch2bet`, alone and inside.
Shows how much a registered atlas prior could add, and whether the model's errors are confident ones.
Evaluation data only.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "MultiModalGen"))
sys.path.insert(0, str(HERE))

from multimodalgen.personalized.atlas import ATLAS_CLASSES, PROBABILITY_FLOOR  # after the path set-up

# each model class's TPM volume (0 grey, 1 white, 2 CSF, 3 bone, 4 soft tissue, 5 air), as `segment --atlas` maps them
MODEL_FROM_TPM = {name: index for index, name in enumerate(ATLAS_CLASSES)}
SUBSETS = (("T1",), ("T2",), ("PD",), ("T1", "T2", "PD"))


def tpm_for_model(tpm_path: Path, reference, labels: tuple[str, ...]) -> np.ndarray:
    """(C, I, J, K) TPM probabilities on `reference`'s grid (`real_heads.tpm_on_grid`), one per model label in
    `labels` (+ the product's `PROBABILITY_FLOOR`, 1e-3)."""
    from real_heads import tpm_on_grid

    unknown = [name for name in labels if name not in MODEL_FROM_TPM]
    if unknown:
        raise ValueError(f"no TPM class for the model's labels {unknown}; expected only {sorted(MODEL_FROM_TPM)}")
    on_grid = tpm_on_grid(tpm_path, reference)
    return on_grid[[MODEL_FROM_TPM[name] for name in labels]] + PROBABILITY_FLOOR


def segment_with_atlas(images: dict, model, atlas: np.ndarray, w: float):
    """`segment_volumes` with the network's probabilities multiplied by `atlas`^w (`(C, I, J, K)` on the images'
    grid, the model's classes) and renormalised before the model's own refinement and CSF shell."""
    from multimodalgen.personalized import inference
    from multimodalgen.personalized.atlas import fuse_atlas

    original = inference.refine_tissues

    def refine_with_atlas(probs, *args, **kwargs):          # the product's fusion, without its registration
        return original(fuse_atlas(probs, atlas, w), *args, **kwargs)

    inference.refine_tissues = refine_with_atlas
    try:
        return inference.segment_volumes(images, model=model, resample=True)
    finally:
        inference.refine_tissues = original


def colin_grey_dice(model, data: Path, weights: list[float]) -> list[float]:
    """Colin27 scored as `real_heads.colin` scores it (grey matter vs the AAL union inside `ch2bet`), for the model
    alone (first) and with the atlas inside at each weight."""
    from real_heads import colin_case, grey_dice

    t1, bet, truth = colin_case(data)
    labels = tuple(model.config.labels)
    atlas = tpm_for_model(data / "spm_templates" / "TPM.nii.gz", t1, labels).astype(np.float32)
    return [grey_dice(segment_with_atlas({"T1": t1}, model, atlas, w).array == labels.index("grey matter"), bet,
                      truth) for w in [0.0, *weights]]


def mean_dice(labels: np.ndarray, truth: np.ndarray, values: tuple[int, int, int]) -> float:
    """Mean Dice of grey/white/CSF; `values` are those classes' values in `labels` (truth: 1, 2, 3)."""
    scores = [2 * ((labels == v) & (truth == t)).sum() / max(1, (labels == v).sum() + (truth == t).sum())
              for v, t in zip(values, (1, 2, 3))]
    return float(np.mean(scores))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="personalized-v10")
    p.add_argument("--data", default=str(HERE.parents[2] / "shared" / "data"))
    p.add_argument("--weights", default="0.5,1", help="comma-separated TPM weights w")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--skip-colin", action="store_true", help="skip Colin27 (1 mm; the model alone and inside)")
    a = p.parse_args()
    import torch
    from multimodalgen.io import read_volume
    from multimodalgen.personalized.inference import segment_volumes
    from multimodalgen.personalized.weights import load_model
    from real_heads import truth_labels

    torch.set_num_threads(a.threads)
    spm = Path(a.data) / "spm_templates"
    weights = [float(w) for w in a.weights.split(",")]
    truth, _ = truth_labels(spm)
    model = load_model(a.model)[0]
    labels = tuple(model.config.labels)
    values = tuple(labels.index(n) for n in ("grey matter", "white matter", "cerebrospinal fluid"))
    print(f"{a.model}: mean Dice grey/white/CSF; after = argmax(log p_model + w log p_TPM) of the final "
          f"probabilities; inside = p_network x p_TPM^w before the refinement")
    print(f"{'case':<22}{'labels':>8}" + "".join(f"{'after ' + str(w):>11}" for w in weights)
          + "".join(f"{'inside ' + str(w):>12}" for w in weights))
    for prefix, pattern in (("oldnorm", "oldnorm_{}.nii.gz"), ("avg152", "avg152{}.nii.gz")):
        images = {m: read_volume(spm / pattern.format(m), m) for m in ("T1", "T2", "PD")}
        atlas_p = tpm_for_model(spm / "TPM.nii.gz", images["T1"], labels)
        atlas = np.log(atlas_p)
        for subset in SUBSETS:
            lab, prob = segment_volumes({m: images[m] for m in subset}, model=model, resample=True,
                                        return_probabilities=True)
            log_p = np.log(prob.array + 1e-4)
            after = [mean_dice((log_p + w * atlas).argmax(0), truth.array, values) for w in weights]
            inside = [mean_dice(segment_with_atlas({m: images[m] for m in subset}, model,
                                                   atlas_p.astype(np.float32), w).array, truth.array, values)
                      for w in weights]
            print(f"{prefix + ' ' + '+'.join(subset):<22}{mean_dice(lab.array, truth.array, values):8.3f}"
                  + "".join(f"{f:11.3f}" for f in after) + "".join(f"{f:12.3f}" for f in inside), flush=True)
    if not a.skip_colin:
        alone, *inside = colin_grey_dice(model, Path(a.data), weights)
        print(f"{'Colin27 T1, GM vs AAL':<22}{alone:8.3f}" + " " * 11 * len(weights)
              + "".join(f"{f:12.3f}" for f in inside), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
