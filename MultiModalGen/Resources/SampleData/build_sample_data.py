"""Rebuild the shipped sample data from the shared development data (developers only; needs ../shared/data).

    python MultiModalGen/Resources/SampleData/build_sample_data.py --data-root ../shared/data

Outputs (all small, see README.md here for provenance and licences):
- colin27_T1_2mm.nii.gz: Colin27 T1 (MRIcron `ch2`, BSD-3) resampled to 2 mm.
- colin27_T2like_moved_2mm.nii.gz: the same head rendered with a T2-like contrast by this script (a fixed
  non-monotonic intensity mapping), moved by a known affine + smooth warp: a multimodal registration pair.
- brain1_MR.nrrd / brain1_tumour.seg.nrrd: a crop of the pyradiomics brain1 MR and its tumour mask (BSD-3).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from multimodalgen.io import read_label, read_volume, write_label, write_volume
from multimodalgen.resample import bounding_box, crop_to_box, resample_isotropic
from multimodalgen.volume import Volume

HERE = Path(__file__).resolve().parent


def t2_like(t1: np.ndarray) -> np.ndarray:
    """A fixed non-monotonic mapping of T1 intensity (0..1) that makes CSF bright, WM dark, GM mid (T2-like)."""
    x = np.clip(t1, 0, 1)
    csf = np.exp(-((x - 0.25) / 0.08) ** 2)
    gm = np.exp(-((x - 0.5) / 0.08) ** 2)
    wm = np.exp(-((x - 0.72) / 0.08) ** 2)
    fat = np.exp(-((x - 0.95) / 0.1) ** 2)
    return (0.9 * csf + 0.55 * gm + 0.3 * wm + 0.6 * fat) * (x > 0.08)


def known_motion() -> np.ndarray:
    """The known rigid motion (RAS mm, 4 deg about R-L through the origin, then 5/-3/4 mm) of the moving head.

    The moving file keeps the T2-like voxels of the T1 grid under the affine `known_motion() @ t1.affine`, so the
    anatomy at RAS point x of the fixed image sits at `known_motion() @ x` in the moving image: the true
    fixed->moving transform is this matrix (the demo checks the registration against it).
    """
    angle = np.deg2rad(4.0)
    rot = np.array([[1, 0, 0], [0, np.cos(angle), -np.sin(angle)], [0, np.sin(angle), np.cos(angle)]])
    motion = np.eye(4)
    motion[:3, :3] = rot
    motion[:3, 3] = [5.0, -3.0, 4.0]
    return motion


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default=str(HERE.parents[3] / "shared" / "data"))
    args = parser.parse_args()
    root = Path(args.data_root)

    t1 = resample_isotropic(read_volume(root / "colin27_mricron" / "ch2.nii.gz", "T1"), 2.0)
    t1_scaled = np.clip(t1.array / np.percentile(t1.array, 99.5), 0, 1)
    write_volume(t1.with_array(np.round(t1_scaled * 255).astype(np.uint8)), HERE / "colin27_T1_2mm.nii.gz")

    t2 = np.round(np.clip(t2_like(t1_scaled), 0, 1) * 255).astype(np.uint8)
    # The same anatomy, moved: same voxels, moved voxel-to-world matrix.
    write_volume(Volume(t2, known_motion() @ t1.affine, "T2"), HERE / "colin27_T2like_moved_2mm.nii.gz")

    image = read_volume(root / "pyradiomics_cases" / "brain1_image.nrrd", "T1")
    label = read_label(root / "pyradiomics_cases" / "brain1_label.nrrd")
    start, stop = bounding_box(label.array > 0, margin=(40, 40, 3))
    image_crop = crop_to_box(image, start, stop)
    label_crop = crop_to_box(label, start, stop)
    write_volume(image_crop.with_array(image_crop.array.astype(np.int16)), HERE / "brain1_MR.nrrd")
    label_crop.metadata["segments"] = [{"label": 1, "name": "tumour", "color": [0.9, 0.2, 0.2]}]
    write_label(label_crop.with_array((label_crop.array > 0).astype(np.uint8)), HERE / "brain1_tumour.seg.nrrd")
    for path in sorted(HERE.iterdir()):
        print(f"{path.name:40s} {path.stat().st_size / 1024:8.1f} KiB")


if __name__ == "__main__":
    main()
