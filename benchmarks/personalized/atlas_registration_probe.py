"""Diagnostic for issue 19's next step: the atlas prior placed by our own affine registration, on non-MNI inputs.

    .venv/bin/python benchmarks/personalized/atlas_registration_probe.py [--model personalized-v10] [--w 4]
        [--data ../shared/data] [--threads 2]

`atlas_fusion_probe.py` showed what SPM's TPM adds inside the refinement when the input is already in MNI space. A
clinical scan is not, so here the TPM is placed by `register_volumes(mode="affine")` (MIND-SSC features) of a
pseudo-T1 rendered from the TPM itself (grey .55, white 1, CSF .1, bone .15, soft tissue .7, air 0; no other image;
now `personalized.atlas.TissueAtlas.pseudo_image`, which `segment --atlas` uses)
onto the input, its six maps warped with the result and multiplied into the network's probabilities at power `w`
before the model's refinement (`atlas_fusion_probe.segment_with_atlas`). Cases (oldnorm T1; truth = oldseg as in
`real_heads.py`): in MNI space; the head turned 15 degrees about two axes inside an unchanged grid (the image content
and the truth move in world space, so an atlas placed without registration is wrong); the upper 60 % of the head.
Mean Dice grey/white/CSF: the model alone, the atlas placed without registration, the atlas registered.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "MultiModalGen"))
sys.path.insert(0, str(HERE))

def turned(image, truth_volume, degrees: float = 15.0):
    """The head turned by `degrees` about the I and K axes inside the same grid: (image Volume, truth array). The
    content is resampled onto `real_heads.rotated_grid` and put back on the original grid, so the anatomy and the
    truth move in world space while the grid stays."""
    from multimodalgen.resample import resample_like
    from multimodalgen.volume import Volume
    from real_heads import rotated_grid

    grid = rotated_grid(image, degrees)
    content = Volume(resample_like(image, grid).array, image.affine.copy(), image.modality)
    return content, resample_like(truth_volume, grid, order="nearest").array


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="personalized-v10")
    p.add_argument("--w", type=float, default=4.0, help="atlas power in the fusion (atlas_fusion_probe.py)")
    p.add_argument("--data", default=str(HERE.parents[2] / "shared" / "data"))
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    import torch
    from atlas_fusion_probe import mean_dice, segment_with_atlas, tpm_for_model
    from multimodalgen.io import read_volume
    from multimodalgen.personalized.atlas import place_atlas, read_tissue_atlas
    from multimodalgen.personalized.inference import segment_volumes
    from multimodalgen.personalized.weights import load_model
    from real_heads import cropped_upper, truth_labels

    torch.set_num_threads(a.threads)
    spm = Path(a.data) / "spm_templates"
    truth, _ = truth_labels(spm)
    model = load_model(a.model)[0]
    labels = tuple(model.config.labels)
    values = tuple(labels.index(n) for n in ("grey matter", "white matter", "cerebrospinal fluid"))
    tpm = read_tissue_atlas(spm / "TPM.nii.gz")

    t1 = read_volume(spm / "oldnorm_T1.nii.gz", "T1")
    cases = {"T1 (MNI space)": (t1, truth.array), "T1 head turned 15/15 deg": turned(t1, truth),
             "T1 cropped (upper 60 %)": cropped_upper(t1, truth.array)}
    print(f"{a.model}, oldnorm, mean Dice grey/white/CSF; atlas = SPM's TPM x network at power {a.w} before the "
          f"refinement")
    print(f"{'case':<28}{'alone':>8}{'atlas unregistered':>20}{'atlas registered':>18}{'registration s':>16}")
    for name, (image, case_truth) in cases.items():
        alone = segment_volumes({"T1": image}, model=model, resample=True)
        t0 = time.perf_counter()
        registered = place_atlas(tpm, image, labels)[0]          # what `segment --atlas` does (+1e-3 floor included)
        seconds = time.perf_counter() - t0
        unregistered = tpm_for_model(spm / "TPM.nii.gz", image, labels)
        scores = [mean_dice(segment_with_atlas({"T1": image}, model, atlas.astype(np.float32), a.w).array,
                            case_truth, values) for atlas in (unregistered, registered)]
        print(f"{name:<28}{mean_dice(alone.array, case_truth, values):8.3f}{scores[0]:20.3f}{scores[1]:18.3f}"
              f"{seconds:16.1f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
