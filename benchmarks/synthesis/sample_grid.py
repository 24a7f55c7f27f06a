"""synth-2 sample grid and throughput: what the training data looks like, and what it costs.

    .venv/bin/python benchmarks/synthesis/sample_grid.py --labels LABELS_DIR [--out benchmarks/synthesis/results]
        [--subjects 6] [--shape 96] [--threads 2]

LABELS_DIR is a folder made by `python -m multimodalgen.synthesis.prepare_labels --data ../shared/data --out DIR`.
Writes `synth2_grid.png` (one row per subject: its label map, then T1, T2, PD, FLAIR, CT, PET of that same
subject, mid-axial slice, patient right on the left as in Slicer) and prints subjects/s at shape^3 on the CPU.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--labels", required=True)
    p.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    p.add_argument("--subjects", type=int, default=6)
    p.add_argument("--shape", type=int, default=96)
    p.add_argument("--spacing", type=float, default=2.0)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    from multimodalgen.intensity import normalize
    from multimodalgen.synthesis.head import HEAD_CLASSES
    from multimodalgen.synthesis.label_sources import read_label_folder
    from multimodalgen.synthesis.physics import MODALITIES
    from multimodalgen.synthesis.subjects import SYNTH2_VERSION, HeadSubjectSampler

    torch.set_num_threads(a.threads)
    sampler = HeadSubjectSampler(read_label_folder(a.labels))
    shape = (a.shape,) * 3
    sampler.sample(0, (16, 16, 16), a.spacing, MODALITIES)                    # warm-up
    fig, axes = plt.subplots(a.subjects, len(MODALITIES) + 1, figsize=(2 * (len(MODALITIES) + 1), 2 * a.subjects))
    t0 = time.perf_counter()
    subjects = [sampler.sample(1000 + i, shape, a.spacing, MODALITIES) for i in range(a.subjects)]
    seconds = time.perf_counter() - t0
    cmap = matplotlib.colors.ListedColormap(["black", "#b07a66", "#f5eed1", "#579edb", "#f2d691", "#b05c4f"])
    for row, sub in zip(axes, subjects):
        k = a.shape // 2
        row[0].imshow(np.flipud(sub.classes[:, :, k].numpy().T)[:, ::-1], cmap=cmap, vmin=0, vmax=5,
                      interpolation="nearest")
        for ax, m in zip(row[1:], MODALITIES):
            img = normalize(sub.images[m].numpy(), m, ct_window=(-100.0, 200.0))
            ax.imshow(np.flipud(img[:, :, k].T)[:, ::-1], cmap="hot" if m == "PET" else "gray", vmin=0, vmax=1)
        for ax in row:
            ax.set_xticks([])
            ax.set_yticks([])
    for ax, title in zip(axes[0], ["labels"] + list(MODALITIES)):
        ax.set_title(title, fontsize=10)
    handles = [matplotlib.patches.Patch(color=cmap(i), label=n) for i, n in enumerate(HEAD_CLASSES) if i]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=9)
    fig.suptitle(f"{SYNTH2_VERSION}: {a.subjects} synthetic subjects, mid-axial slice, {a.spacing:g} mm, "
                 "patient right on the left (radiological)", fontsize=10)
    fig.tight_layout(rect=(0, 0.04, 1, 0.97))
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    fig.savefig(out / "synth2_grid.png", dpi=60)
    print(f"{SYNTH2_VERSION}: {a.subjects} subjects x {len(MODALITIES)} modalities at {a.shape}^3 in {seconds:.1f} s "
          f"= {a.subjects / seconds:.2f} subjects/s ({a.threads} CPU threads); grid: {out / 'synth2_grid.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
