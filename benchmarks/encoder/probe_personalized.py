"""Diagnostic for issue 18: the cross-contrast tissue probe applied to a personalized model's log-posteriors.

    .venv/bin/python benchmarks/encoder/probe_personalized.py [--model personalized-v10] [--data ../shared/data]

The same probe as `run_benchmark.py` (a GM/WM/CSF logistic regression trained on the T1 descriptor, balanced
accuracy on the others; `invariance.probe_scores`, seed 0), with the descriptor = log of the model's six class
probabilities from that one image alone (given as T1/T2/PD; the held-out amyloid PET as PET, DWI and BOLD as T2),
with the network alone (`refine none`) and with its default intensity refinement. Asks whether a supervised tissue
segmenter trained on the same synthetic heads would, as features, pass the probe target (>= .80) the encoders miss.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "MultiModalGen"))
sys.path.insert(0, str(HERE))

GIVEN_AS = {"T1": "T1", "T2": "T2", "PD": "PD", "amyloidPET": "PET", "DWI": "T2", "BOLD": "T2"}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="personalized-v10")
    p.add_argument("--data", default=str(HERE.parents[2] / "shared" / "data"))
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    import torch
    from invariance import probe_scores, standardize
    from multimodalgen.personalized.inference import segment_volumes
    from multimodalgen.personalized.weights import load_model
    from multimodalgen.volume import Volume
    from run_benchmark import CONTRASTS, HELDOUT, SETS, load_data

    torch.set_num_threads(a.threads)
    data = load_data(Path(a.data))
    model = load_model(a.model)[0]

    def log_posterior(image: np.ndarray, name: str, refine: str) -> np.ndarray:
        modality = GIVEN_AS[name]
        _, prob = segment_volumes({modality: Volume(image.astype(np.float32), data["affine"], modality)},
                                  model=model, resample=True, refine=refine, return_probabilities=True)
        return np.log(prob.array + 1e-4)

    brain, labels = data["brain"], data["labels"]
    for refine in ("none", "intensity"):
        row = {"method": f"{a.model} log-posterior (refine {refine})"}
        for set_name in SETS:
            desc = {c: standardize(log_posterior(data["images"][(set_name, c)], c, refine), brain)
                    for c in CONTRASTS}
            if set_name == "avg152":      # held-out contrasts are rendered on this set's grid, as in run_benchmark
                desc.update({h: standardize(log_posterior(data["heldout"][h], h, refine), brain) for h in HELDOUT})
            for name, score in probe_scores(desc["T1"], desc, labels, np.random.default_rng(0)).items():
                row[f"probe_{name}_{'heldout' if name in HELDOUT else set_name}"] = round(score, 3)
        print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
