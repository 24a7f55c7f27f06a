"""Real cross-subject CT -> MR example: InVesalius head CT (moving) onto the colin27 ch2 T1 MR head (fixed).

    python benchmarks/registration/ct_mr_example.py [--out-dir benchmarks/registration/ct_mr_example] [--threads 2]
        [--features mind+encoder --encoder encoder-v4:correspondence]

No ground-truth transform exists for a real pair; it is judged by the Dice of the head masks (MR: head outline of
the T1 by Otsu threshold + hole filling; CT: voxels above -300 HU + hole filling, the CT's head warped with the
result's transform, nearest neighbour) restricted to the axial extent both images cover, before registration
(header geometry), after the affine stage and after the deformable stage, plus the overlay PNG written by
`register_files`. Data: /work/shared/data (development only, never used by tests).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
CT = DATA / "invesalius_ct_head" / "ct_head.nii.gz"
MR = DATA / "colin27_mricron" / "ch2.nii.gz"


def head_mask(array: np.ndarray, ct: bool) -> np.ndarray:
    """Head (not air) mask of an `(I, J, K)` image: largest connected component, holes filled per slice."""
    from scipy import ndimage
    from skimage.filters import threshold_otsu

    mask = array > (-300.0 if ct else threshold_otsu(array[::2, ::2, ::2]) * 0.5)
    mask = ndimage.binary_opening(mask, iterations=2)
    lab, n = ndimage.label(mask)
    if n > 1:
        sizes = ndimage.sum(mask, lab, range(1, n + 1))
        mask = lab == (int(np.argmax(sizes)) + 1)
    for k in range(mask.shape[2]):
        mask[:, :, k] = ndimage.binary_fill_holes(mask[:, :, k])
    return mask


def dice(a: np.ndarray, b: np.ndarray) -> float:
    s = a.sum() + b.sum()
    return float(2.0 * np.logical_and(a, b).sum() / s) if s else float("nan")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out-dir", default=str(Path(__file__).resolve().parent / "ct_mr_example"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--preset", default="fast")
    ap.add_argument("--features", default=None, help="register --features (mind or mind+encoder; default: the preset's)")
    ap.add_argument("--encoder", default=None, help="register --encoder NAME[:GROUP] with --features mind+encoder")
    ap.add_argument("--keep-outputs", action="store_true", help="keep transform.h5, displacement and warped image")
    a = ap.parse_args(argv)
    import torch

    torch.set_num_threads(a.threads)
    from multimodalgen.io import read_volume
    from multimodalgen.registration import register_volumes
    from multimodalgen.registration.api import register_files
    from multimodalgen.registration.contract import RegistrationResult
    from multimodalgen.registration.export import warp_volume
    from multimodalgen.resample import resample_like
    from multimodalgen.volume import Volume

    out = Path(a.out_dir)
    fixed, moving = read_volume(MR, "T1"), read_volume(CT, "CT")
    fixed_head = head_mask(fixed.array.astype(np.float32), ct=False)
    moving_head = Volume(head_mask(moving.array.astype(np.float32), ct=True).astype(np.uint8), moving.affine, "LABEL")
    results = {"fixed": str(MR), "moving": str(CT), "fixed_head_voxels": int(fixed_head.sum()),
               "features": a.features, "encoder": a.encoder}

    def score(result: RegistrationResult | None) -> dict:
        warped = (warp_volume(result, moving_head, "nearest").array if result is not None
                  else resample_like(moving_head, fixed, "nearest").array) > 0
        # compare only the axial slices where the warped CT has data (the CT stops at the skull base)
        covered = np.nonzero(warped.any(axis=(0, 1)))[0]
        ks = slice(covered.min(), covered.max() + 1) if covered.size else slice(None)
        return {"head_dice": round(dice(warped, fixed_head), 4),
                "head_dice_in_ct_extent": round(dice(warped[:, :, ks], fixed_head[:, :, ks]), 4)}

    results["before"] = score(None)
    t0 = time.perf_counter()
    affine_only = register_volumes(fixed, moving, mode="affine", preset=a.preset)
    results["affine"] = {**score(affine_only), "seconds": round(time.perf_counter() - t0, 2)}
    t0 = time.perf_counter()
    from multimodalgen.verbs import RunContext

    report = register_files(MR, CT, out, mode="deformable", preset=a.preset, ctx=RunContext(device="cpu"),
                            features=a.features, encoder=a.encoder)
    seconds = round(time.perf_counter() - t0, 2)
    # the deformable result is scored through the written transform.h5 with SimpleITK (independent of our code)
    import SimpleITK as sitk

    from multimodalgen.io.sitk_bridge import sitk_to_volume, volume_to_sitk

    warped = sitk.Resample(volume_to_sitk(moving_head), volume_to_sitk(fixed), sitk.ReadTransform(str(out / "transform.h5")),
                           sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    warped_head = sitk_to_volume(warped).array > 0
    covered = np.nonzero(warped_head.any(axis=(0, 1)))[0]
    ks = slice(covered.min(), covered.max() + 1)
    results["deformable"] = {"head_dice": round(dice(warped_head, fixed_head), 4),
                             "head_dice_in_ct_extent": round(dice(warped_head[:, :, ks], fixed_head[:, :, ks]), 4),
                             "seconds_register_files": seconds, "timings_s": report.timings,
                             "bytes_written": report.metrics.get("bytes_written"),
                             "io_share": report.metrics.get("io_share"),
                             "nonpositive_jacobian_fraction": report.metrics["jacobian"]["nonpositive_fraction"],
                             "working_grid": report.metrics["working_grid"],
                             "field_grid": report.metrics.get("field_grid")}
    (out / "ct_mr_metrics.json").write_text(json.dumps(results, indent=2) + "\n")
    if not a.keep_outputs:  # keep the folder small: the figure, the report and the metrics stay
        for name in ("displacement.nii.gz", "transform.h5", "inverse_transform.h5", "warped.nii.gz"):
            (out / name).unlink(missing_ok=True)
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
