"""Saved-task transfer on real data: Colin27 `ch2` painted on 3 slices -> session -> task -> apply.

    python benchmarks/fewshot/bench_task_transfer.py [--data /work/shared/data] [--structures caudate_L,...]
                                                     [--k 3] [--align auto] [--out DIR]

Per AAL structure (one session per structure; several at once with `--together`): the structure is painted on K
axial slices of ch2 (quantiles 0.1 ... 0.9 of its extent, as the harness does), a session segments it and saves a
task; the task is applied (no painting) to (a) the same ch2 image: Dice against the session's own output (target
>= .95), and (b) SPM's `single_subj_T1` (2 mm copy of the same subject): Dice against AAL resampled
nearest-neighbour onto that grid through the headers (target >= .75). Prints one line per structure and the means,
and the painted-slice session's own Dice against AAL on the unpainted slices for reference.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "MultiModalGen"))

AAL_VALUES = {"caudate_L": 71, "caudate_R": 72, "putamen_L": 73, "putamen_R": 74, "pallidum_L": 75,
              "pallidum_R": 76, "thalamus_L": 77, "thalamus_R": 78, "hippocampus_L": 37, "hippocampus_R": 38,
              "amygdala_L": 41, "amygdala_R": 42}


def dice(a, b):
    s = int(a.sum()) + int(b.sum())
    return 1.0 if s == 0 else 2.0 * int((a & b).sum()) / s


def painting(truth: np.ndarray, axis: int, k: int) -> tuple[np.ndarray, list[int]]:
    present = np.flatnonzero(truth.any(axis=tuple(a for a in range(3) if a != axis)))
    qs = [0.5] if k == 1 else np.linspace(0.1, 0.9, k)
    slices = sorted({int(present[int(round(q * (len(present) - 1)))]) for q in qs})
    out = np.zeros(truth.shape, np.uint8)
    for s in slices:
        ix = [slice(None)] * 3
        ix[axis] = s
        out[tuple(ix)] = truth[tuple(ix)]
    return out, slices


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="/work/shared/data")
    ap.add_argument("--structures", default=",".join(AAL_VALUES))
    ap.add_argument("--k", type=int, default=3)
    ap.add_argument("--align", default="auto")
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    import torch

    from multimodalgen.fewshot.annotations import default_axis
    from multimodalgen.fewshot.session import FewShotSession
    from multimodalgen.fewshot.task import apply_task, load_task
    from multimodalgen.io import read_label, read_volume
    from multimodalgen.resample import resample_like
    from multimodalgen.volume import Volume

    torch.set_num_threads(1)
    data = Path(a.data)
    ch2 = read_volume(data / "colin27_mricron/ch2.nii.gz", "T1")
    aal = read_label(data / "colin27_mricron/aal.nii.gz")
    other = read_volume(data / "spm_templates/single_subj_T1.nii.gz", "T1")
    aal_other = resample_like(aal, other, "nearest")
    axis = default_axis(ch2.affine)
    out_dir = Path(a.out or tempfile.mkdtemp(prefix="fewshot_task_"))
    rows = []
    for name in a.structures.split(","):
        value = AAL_VALUES[name]
        truth = aal.array == value
        paint, slices = painting(truth, axis, a.k)
        session = FewShotSession([ch2], seed=0)
        t0 = time.perf_counter()
        result = session.segment(Volume(paint, ch2.affine, "LABEL"), axis=axis)
        t_session = time.perf_counter() - t0
        keep = np.ones(truth.shape[axis], bool)
        keep[slices] = False
        ix = [slice(None)] * 3
        ix[axis] = keep
        d_session = dice(result.array[tuple(ix)] > 0, truth[tuple(ix)])
        folder = session.save_task(out_dir / name)
        task = load_task(folder)
        t0 = time.perf_counter()
        same = apply_task(task, [ch2], align=a.align)
        t_same = time.perf_counter() - t0
        t0 = time.perf_counter()
        moved = apply_task(task, [other], align=a.align)
        t_other = time.perf_counter() - t0
        d_same = dice(same.array > 0, result.array > 0)
        d_other = dice(moved.array > 0, aal_other.array == value)
        notes = [n for n in moved.metadata["fewshot"]["notes"] if n.startswith("warning")]
        rows.append((d_session, d_same, d_other))
        print(f"{name:<14} session Dice (unpainted) {d_session:.3f} ({t_session:.1f} s) | task on same image vs "
              f"session {d_same:.3f} ({t_same:.1f} s) | task on single_subj_T1 vs AAL {d_other:.3f} "
              f"({t_other:.1f} s, {moved.metadata['fewshot']['alignment']}){' ' + '; '.join(notes) if notes else ''}",
              flush=True)
    m = np.mean(rows, axis=0)
    print(f"mean: session {m[0]:.3f} | same image {m[1]:.3f} (target >= .95) | single_subj_T1 {m[2]:.3f} "
          f"(target >= .75); worst same {min(r[1] for r in rows):.3f}, worst other {min(r[2] for r in rows):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
