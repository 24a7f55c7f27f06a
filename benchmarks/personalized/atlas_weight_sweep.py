"""`segment --atlas`'s two settings on real heads: the atlas weight and the registration mode that places it.

    .venv/bin/python benchmarks/personalized/atlas_weight_sweep.py [--modes affine,deformable] [--weights 2,4,8]
        [--model personalized-v10] [--data ../shared/data] [--threads 2]

For oldnorm T1, oldnorm T2, avg152 PD (mean Dice grey/white/CSF against oldseg, as `real_heads.py`) and Colin27
(grey matter against the AAL union inside `ch2bet`): the product path (`segment_volumes(atlas=SPM's TPM,
atlas_weight=w)`) with the atlas placed by `place_atlas(mode=...)`, and the brain agreement of the placement.
The templates' truth is a population average that favours any atlas, so the weight is chosen on Colin27, the one
individual brain. Evaluation data only.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "MultiModalGen"))
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "encoder"))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--modes", default="affine,deformable")
    p.add_argument("--weights", default="2,4,8")
    p.add_argument("--model", default="personalized-v10")
    p.add_argument("--data", default=str(HERE.parents[2] / "shared" / "data"))
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    import torch
    from multimodalgen.io import read_volume
    from multimodalgen.personalized import atlas as atlas_module
    from multimodalgen.personalized import inference
    from multimodalgen.personalized.weights import load_model
    from real_heads import colin_case, dice_by_name, grey_dice, mean3, names_of, truth_labels

    torch.set_num_threads(a.threads)
    data = Path(a.data)
    spm = data / "spm_templates"
    truth, _ = truth_labels(spm)
    model = load_model(a.model)[0]
    atlas = atlas_module.read_tissue_atlas(spm / "TPM.nii.gz")
    weights = [float(w) for w in a.weights.split(",")]
    colin_t1, bet, colin_truth = colin_case(data)
    cases = {"oldnorm T1": {"T1": read_volume(spm / "oldnorm_T1.nii.gz", "T1")},
             "oldnorm T2": {"T2": read_volume(spm / "oldnorm_T2.nii.gz", "T2")},
             "avg152 PD": {"PD": read_volume(spm / "avg152PD.nii.gz", "PD")}, "colin27": {"T1": colin_t1}}
    place = atlas_module.place_atlas
    print(f"{a.model} + SPM's TPM; mean Dice grey/white/CSF (Colin27: grey matter vs AAL) at each atlas weight")
    try:
        for mode in a.modes.split(","):
            atlas_module.place_atlas = lambda *args, _mode=mode, **kwargs: place(*args, mode=_mode, **kwargs)
            for name, images in cases.items():
                row = []
                for w in weights:
                    labels = inference.segment_volumes(images, model=model, resample=True, atlas=atlas,
                                                       atlas_weight=w)
                    row.append(grey_dice(labels.array == model.config.labels.index("grey matter"), bet, colin_truth)
                               if name == "colin27" else mean3(dice_by_name(labels.array, names_of(labels),
                                                                            truth.array)))
                print(f"{mode:<11}{name:<12}" + "".join(f"  w{w:g} {v:.3f}" for w, v in zip(weights, row))
                      + f"  brain agreement {labels.metadata['atlas']['brain_agreement']}", flush=True)
    finally:
        atlas_module.place_atlas = place
    return 0


if __name__ == "__main__":
    sys.exit(main())
