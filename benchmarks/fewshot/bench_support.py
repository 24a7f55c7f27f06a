"""Support-case mode on real data, beside one-shot atlas transfer with ANTs SyN.

    python benchmarks/fewshot/bench_support.py --setting same [--structures caudate_L,...]
    python benchmarks/fewshot/bench_support.py --setting cross --atlas-csv HARNESS_RESULTS.csv

`same` (one label definition on both sides): support = Colin27 ch2 + AAL, query = SPM's single_subj_T1 (the 2 mm
copy of that subject, different intensities and grid), truth = AAL resampled nearest-neighbour onto the query
through the headers; the baseline is ANTs SyN (ANTsPy, as the harness's `atlas` baseline: 2 mm, whole images)
run here on the same pair. `cross`: the harness's `atlas` setting: as the harness's `atlas` baseline (ANTs SyN of avg152T1 onto ch2, NMM label warped):
our support mode gets the same support image and label and segments ch2; scored against AAL on ch2 (Dice over the
harness's crop of that structure when `--atlas-csv` gives the harness's results with its `atlas` rows, else over
the whole volume) and volume error against AAL. The two atlases define the structures differently, so neither
method can reach 1.0. Prints one line per structure, the means, and the atlas rows beside when given.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "MultiModalGen"))

# name: (AAL value on ch2, Neuromorphometrics value on avg152)
STRUCTURES = {"caudate_L": (71, 37), "caudate_R": (72, 36), "putamen_L": (73, 58), "putamen_R": (74, 57),
              "thalamus_L": (77, 60), "thalamus_R": (78, 59), "hippocampus_L": (37, 48), "hippocampus_R": (38, 47),
              "amygdala_L": (41, 32), "amygdala_R": (42, 31), "pallidum_L": (75, 56), "pallidum_R": (76, 55)}


def crop_box(truth: np.ndarray, spacing) -> tuple[slice, ...]:
    """The harness's crop: bounding box + max(25 % of the extent, 10 mm, 2 voxels) per axis."""
    idx = np.argwhere(truth)
    lo, hi = idx.min(0), idx.max(0) + 1
    margin = np.maximum(np.ceil(np.maximum(0.25 * (hi - lo), 10.0 / np.asarray(spacing))), 2).astype(int)
    lo, hi = np.maximum(lo - margin, 0), np.minimum(hi + margin, truth.shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))


def _ants_transfer(support, query):
    """ANTs SyN (2 mm, whole images, as the harness's atlas baseline) of `support` onto `query`: a function
    label Volume (support grid) -> warped array on the query grid (nearest neighbour)."""
    import ants

    def to_ants(vol, order="linear"):
        from multimodalgen.resample import isotropic_grid, resample_to_grid

        shape, affine = isotropic_grid(vol, 2.0)
        small = resample_to_grid(vol, shape, affine, order)
        return _as_ants(small.array.astype(np.float32), small.affine)

    fixed, moving = to_ants(query), to_ants(support)
    reg = ants.registration(fixed=fixed, moving=moving, type_of_transform="SyN")
    full_fixed = _as_ants(query.array.astype(np.float32), query.affine)

    def warp(label):
        moving_label = _as_ants(label.array.astype(np.float32), label.affine)
        out = ants.apply_transforms(fixed=full_fixed, moving=moving_label, transformlist=reg["fwdtransforms"],
                                    interpolator="nearestNeighbor")
        return out.numpy()

    return warp


def _as_ants(array, affine):
    """An ANTs image (LPS physical space) from an `(I, J, K)` array and its voxel -> RAS affine."""
    import ants

    lps = np.diag([-1.0, -1.0, 1.0]) @ np.asarray(affine, np.float64)[:3]
    spacing = np.linalg.norm(lps[:, :3], axis=0)
    return ants.from_numpy(array, origin=tuple(lps[:, 3]), spacing=tuple(spacing),
                           direction=lps[:, :3] / spacing)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="/work/shared/data")
    ap.add_argument("--structures", default=",".join(STRUCTURES))
    ap.add_argument("--atlas-csv", default=None, help="harness results.csv with `atlas` rows (cases aal_<name>)")
    ap.add_argument("--setting", choices=("same", "cross"), default="same")
    a = ap.parse_args(argv)
    import torch

    from multimodalgen.fewshot.support import segment_from_support
    from multimodalgen.io import read_label, read_volume
    from multimodalgen.volume import Volume

    torch.set_num_threads(2)
    data = Path(a.data)
    from multimodalgen.resample import resample_like

    if a.setting == "same":
        query = read_volume(data / "spm_templates/single_subj_T1.nii.gz", "T1")
        support = read_volume(data / "colin27_mricron/ch2.nii.gz", "T1")
        support_labels = read_label(data / "colin27_mricron/aal.nii.gz")
        truth_labels = resample_like(support_labels, query, "nearest")
    else:
        query = read_volume(data / "colin27_mricron/ch2.nii.gz", "T1")
        truth_labels = read_label(data / "colin27_mricron/aal.nii.gz")
        support = read_volume(data / "spm_templates/avg152T1.nii.gz", "T1")
        support_labels = resample_like(read_label(data / "spm_templates/labels_Neuromorphometrics.nii.gz"),
                                       support, "nearest")
    atlas = {}
    if a.atlas_csv:
        for r in csv.DictReader(open(a.atlas_csv)):
            if r["method"] == "atlas" and r["k"] == "1":
                atlas[r["case"]] = (float(r["dice"]), float(r["vol_err_pct"]))
    ants_warp = _ants_transfer(support, query) if a.setting == "same" else None
    rows = []
    names = a.structures.split(",")
    # all structures in one call (one registration, one multi-label head): support values -> AAL values
    support_array = np.zeros(support_labels.shape3d, np.uint8)
    for name in names:
        value = STRUCTURES[name][0]
        support_value = value if a.setting == "same" else STRUCTURES[name][1]
        support_array[support_labels.array == support_value] = value
    label_all = Volume(support_array, support_labels.affine, "LABEL")
    t0 = time.perf_counter()
    result = segment_from_support([support], [label_all], [query], seed=0)
    seconds = time.perf_counter() - t0
    print(f"support mode: {len(names)} structures in one call, {seconds:.1f} s; "
          f"notes: {result.metadata['fewshot']['notes']}", flush=True)
    for name in names:
        value = STRUCTURES[name][0]
        label = Volume((support_array == value).astype(np.uint8), support_labels.affine, "LABEL")
        truth = truth_labels.array == value
        box = crop_box(truth, query.spacing)
        pred, ref = result.array[box] == value, truth[box]
        d = 2.0 * (pred & ref).sum() / (pred.sum() + ref.sum())
        vol = 100.0 * (pred.sum() - ref.sum()) / ref.sum()
        base = atlas.get(f"aal_{name}")
        if ants_warp is not None:
            warped = ants_warp(label)[box] > 0
            base = (2.0 * (warped & ref).sum() / (warped.sum() + ref.sum()),
                    100.0 * (warped.sum() - ref.sum()) / ref.sum())
        rows.append((d, abs(vol), base[0] if base else np.nan, abs(base[1]) if base else np.nan))
        print(f"{name:<14} support mode Dice {d:.3f} vol err {vol:+.1f} %" +
              (f" | atlas (ANTs SyN) Dice {base[0]:.3f} vol err {base[1]:+.1f} %" if base else ""), flush=True)
    m = np.nanmean(rows, axis=0)
    print(f"mean: support Dice {m[0]:.3f}, |vol err| {m[1]:.1f} % (max {max(r[1] for r in rows):.1f} %)" +
          (f" | atlas Dice {m[2]:.3f}, |vol err| {m[3]:.1f} %; margin {m[0] - m[2]:+.3f}" if not np.isnan(m[2])
           else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
