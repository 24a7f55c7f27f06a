"""Intensity and CSF profile across the brain surface: SPM oldnorm/oldseg beside synth-2 template-like subjects.

    .venv/bin/python benchmarks/personalized/boundary_profile.py --labels LABEL_FOLDER [--data ../shared/data]
        [--subjects 6] [--brain-share 0.5] [--sulcal-shift -1.0] [--threads 1]

A diagnostic for issue 19's CSF loss (79 % of the oldseg truth's CSF lies in the truth brain's outer voxel layer):
for every whole-voxel signed distance d from the truth brain's surface (d < 0 inside grey + white + CSF, d > 0
outside; Euclidean, in voxels of the 2 mm grid), the mean image intensity (divided by the 99th percentile inside the
brain) and the fraction of voxels labelled CSF. Rows: oldnorm T1/T2/PD with the oldseg truth that `real_heads.py`
scores against (argmax of grey/white/CSF where the largest is >= .5), and the mean over `--subjects` synth-2
population/smoothed template subjects (`p_template` 1, no partial field of view, centred, 88 x 104 x 88 at 2 mm)
rendered from `--labels` (a `prepare-labels` folder), with their classes by plain argmax and, with `--brain-share S`,
by SPM's brain rule (`subjects.population_classes`). Where the two rows differ the synthetic templates do not look
like the template the benchmark uses; no network is run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

DISTANCES = tuple(d for d in range(-4, 5) if d != 0)   # rounding a signed EDT never gives 0
MODALITIES = ("T1", "T2", "PD")
CSF = 3


def profile(classes: np.ndarray, image: np.ndarray) -> tuple[list[float], list[float]]:
    """`classes` (I, J, K) with 1 grey, 2 white, 3 CSF (anything else outside the brain), `image` on the same grid:
    (mean normalised intensity, CSF fraction) for each distance of DISTANCES."""
    from scipy import ndimage

    brain = (classes >= 1) & (classes <= 3)
    signed = np.round(ndimage.distance_transform_edt(~brain) - ndimage.distance_transform_edt(brain))
    x = image.astype(np.float64) / np.percentile(image[brain], 99)
    bands = [signed == d for d in DISTANCES]
    return [float(x[b].mean()) for b in bands], [float((classes[b] == CSF).mean()) for b in bands]


def synthetic_rows(labels: Path, n: int, brain_share: float = 0.0,
                   sulcal_shift: float = 0.0) -> dict[str, list[float]]:
    """Mean profiles over `n` synth-2 template-like subjects (seeds 100..), keys T1/T2/PD and "CSF"."""
    from multimodalgen.synthesis.label_sources import read_label_folder
    from multimodalgen.synthesis.subjects import HeadSubjectSampler

    sampler = HeadSubjectSampler(read_label_folder(str(labels)))
    rows: dict[str, list[list[float]]] = {m: [] for m in MODALITIES + ("CSF",)}
    for seed in range(100, 100 + n):
        subject = sampler.sample(seed, (88, 104, 88), 2.0, MODALITIES, p_partial=0.0, p_template=1.0,
                                 max_offset_mm=0.0, template_brain_share=brain_share,
                                 template_sulcal_csf_shift=sulcal_shift)
        classes = subject.classes.numpy()
        for m in MODALITIES:
            values, csf = profile(classes, subject.images[m].numpy())
            rows[m].append(values)
        rows["CSF"].append(csf)
    return {k: list(np.mean(v, axis=0)) for k, v in rows.items()}


def print_rows(name: str, rows: dict[str, list[float]]) -> None:
    """One table line per modality (intensity / p99) and one for the CSF fraction, labelled `name`."""
    for m in MODALITIES:
        print(f"{name + ' ' + m + ' intensity / p99':<66}" + "".join(f"{v:7.2f}" for v in rows[m]))
    print(f"{name + ': fraction CSF':<66}" + "".join(f"{v:7.2f}" for v in rows["CSF"]))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(Path(__file__).resolve().parents[3] / "shared" / "data"))
    p.add_argument("--labels", required=True, help="a prepare-labels folder (the synth-2 label sources)")
    p.add_argument("--subjects", type=int, default=6, help="synthetic template subjects to average (default 6)")
    p.add_argument("--brain-share", type=float, default=0.0,
                   help="also profile the subjects labelled by SPM's brain rule with this share (0 = only argmax)")
    p.add_argument("--sulcal-shift", type=float, default=0.0,
                   help="also profile the subjects with this template_sulcal_csf_shift (0 = not)")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    import torch

    from multimodalgen.io import read_volume
    from real_heads import truth_labels

    torch.set_num_threads(a.threads)
    spm = Path(a.data) / "spm_templates"
    truth = truth_labels(spm)[0].array
    header = "distance from the truth brain surface (voxels, 2 mm; < 0 inside)"
    print(f"{header:<66}" + "".join(f"{d:>7d}" for d in DISTANCES))
    for m in MODALITIES:
        values, csf = profile(truth, read_volume(spm / f"oldnorm_{m}.nii.gz", modality=m).array)
        print(f"{'oldnorm ' + m + ' intensity / p99 in the brain':<66}" + "".join(f"{v:7.2f}" for v in values))
    print(f"{'oldseg truth: fraction CSF':<66}" + "".join(f"{v:7.2f}" for v in csf))
    print_rows(f"synth-2 templates ({a.subjects})", synthetic_rows(Path(a.labels), a.subjects))
    if a.brain_share > 0:   # same subjects (same seeds), classes by SPM's brain rule; the profile is about their surface
        print_rows(f"same, brain rule {a.brain_share:.2f}",
                   synthetic_rows(Path(a.labels), a.subjects, a.brain_share))
    if a.sulcal_shift:
        print_rows(f"same seeds, sulcal CSF shift {a.sulcal_shift:+.1f}",
                   synthetic_rows(Path(a.labels), a.subjects, 0.0, a.sulcal_shift))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
