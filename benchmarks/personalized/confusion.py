"""Where a personalized model's grey/white/CSF errors are on oldnorm: confusion table and a surface profile.

    .venv/bin/python benchmarks/personalized/confusion.py [--model personalized-v8] [--subsets "T1;T1+T2+PD"]
        [--refine intensity|none] [--threads 2]

For each subset of the oldnorm templates: the voxel counts of truth class (oldseg argmax >= .5, as `real_heads.py`;
background / grey / white / CSF) against the predicted class (the model's labels), then per distance to the truth
brain's surface (voxels, Euclidean; > 0 inside, -1 = the first voxel outside) the mean normalised T1, the truth's
class fractions and the prediction's class fractions. Development data only (evaluation, never training).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from real_heads import names_of, truth_labels  # noqa: E402

TRUTH_NAMES = ("background", "grey", "white", "CSF")


def signed_distance(brain: np.ndarray) -> np.ndarray:
    """Rounded Euclidean distance in voxels to the other side of `brain`'s surface: > 0 inside, < 0 outside."""
    from scipy import ndimage

    inside = ndimage.distance_transform_edt(brain)
    outside = ndimage.distance_transform_edt(~brain)
    return np.round(np.where(brain, inside, -outside)).astype(int)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(Path(__file__).resolve().parents[3] / "shared" / "data"))
    p.add_argument("--model", default="personalized-v8")
    p.add_argument("--subsets", default="T1;T1+T2+PD", help="semicolon-separated subsets of T1, T2, PD")
    p.add_argument("--refine", default="intensity", choices=("intensity", "none"))
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    import torch

    torch.set_num_threads(a.threads)
    from multimodalgen.intensity import normalize
    from multimodalgen.io import read_volume
    from multimodalgen.personalized.inference import segment_volumes
    from multimodalgen.personalized.weights import load_model

    spm = Path(a.data) / "spm_templates"
    truth = truth_labels(spm)[0].array
    model = load_model(a.model)[0]
    distance = signed_distance(truth > 0)
    t1 = normalize(read_volume(spm / "oldnorm_T1.nii.gz", "T1").array.astype(np.float32), "T1")
    print(f"model {a.model}, refine {a.refine}; oldnorm; rows truth, columns prediction (voxels)")
    for subset in a.subsets.split(";"):
        images = {m: read_volume(spm / f"oldnorm_{m}.nii.gz", m) for m in subset.split("+")}
        labels = segment_volumes(images, model=model, resample=True, refine=a.refine)
        pred, names = labels.array, names_of(labels)
        values = sorted(names)
        print(f"\n{subset}\n{'truth':>10} " + " ".join(f"{names[v][:12]:>12}" for v in values) + f" {'background':>12}")
        for c, name in enumerate(TRUTH_NAMES):
            counts = [int(((truth == c) & (pred == v)).sum()) for v in values] + [int(((truth == c) & (pred == 0)).sum())]
            print(f"{name:>10} " + " ".join(f"{n:12d}" for n in counts))
        print(f"{'distance':>10} {'T1':>5}  truth grey/white/CSF    prediction " + "/".join(names[v][:5] for v in values))
        for d in range(-4, 6):
            band = distance == d
            if not band.any():
                continue
            truth_frac = " ".join(f"{(truth[band] == c).mean():.2f}" for c in (1, 2, 3))
            pred_frac = " ".join(f"{(pred[band] == v).mean():.2f}" for v in values)
            print(f"{d:>10} {t1[band].mean():5.2f}  {truth_frac:<22}  {pred_frac}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
