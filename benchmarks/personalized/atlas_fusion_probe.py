"""Diagnostic (not a product path): personalized-v10's output probabilities fused with SPM's TPM after the fact.

    .venv/bin/python benchmarks/personalized/atlas_fusion_probe.py

For oldnorm and avg152 (MNI space; truth = oldseg as in `real_heads.py`) and the subsets T1, T2, PD, T1+T2+PD:
mean Dice grey/white/CSF of the model's labels, of the argmax of its probabilities, and of
argmax(log p_model + w log p_TPM) for w = 0.5 and 1 (TPM resampled onto the case's grid, classes mapped
air -> background, bone -> skull). Shows how much a registered atlas prior could add, and how far the model's
confident errors sit from the population prior. Evaluation data only.
"""
import sys, numpy as np, torch
torch.set_num_threads(1)
sys.path.insert(0, "MultiModalGen"); sys.path.insert(0, "benchmarks/personalized")
import real_heads as rh
import nibabel as nib
from pathlib import Path
from multimodalgen.io import read_volume
from multimodalgen.resample import resample_like
from multimodalgen.volume import Volume
from multimodalgen.personalized.inference import segment_volumes
from multimodalgen.personalized.weights import load_model
spm = Path("../shared/data/spm_templates")
truth, _ = rh.truth_labels(spm)
model = load_model("personalized-v10")[0]
print(model.config.labels)
tpm = nib.load(str(spm / "TPM.nii.gz")); T = np.asarray(tpm.dataobj, np.float32)
def atlas_on(ref):
    p = np.stack([resample_like(Volume(T[..., k], tpm.affine, "T1"), ref).array for k in range(6)], 0)
    # model order: background, GM, WM, CSF, skull, soft  <- TPM: air(5), GM0, WM1, CSF2, bone3, soft4
    return np.stack([p[5], p[0], p[1], p[2], p[3], p[4]], 0) + 1e-3
def score(lab, t):
    return [2 * ((lab == c) & (t == c)).sum() / max(1, (lab == c).sum() + (t == c).sum()) for c in (1, 2, 3)]
for prefix, pat in (("oldnorm", "oldnorm_{}.nii.gz"), ("avg152", "avg152{}.nii.gz")):
    imgs = {m: read_volume(spm / pat.format(m), m) for m in ("T1", "T2", "PD")}
    A = atlas_on(imgs["T1"])
    for subset in (("T1",), ("T2",), ("PD",), ("T1", "T2", "PD")):
        lab, prob = segment_volumes({m: imgs[m] for m in subset}, model=model, resample=True, return_probabilities=True)
        P = prob.array
        row = [f"{prefix} {'+'.join(subset):10s} model-labels {np.mean(score(lab.array, truth.array)):.3f} probs-argmax {np.mean(score(P.argmax(0), truth.array)):.3f}"]
        for w in (0.5, 1.0):
            f = np.log(P + 1e-4) + w * np.log(A)
            row.append(f"w{w} {np.mean(score(f.argmax(0), truth.array)):.3f}")
        print("  ".join(row), flush=True)
