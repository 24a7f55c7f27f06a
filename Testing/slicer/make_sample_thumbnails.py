"""Write the Sample Data thumbnails (128x128 PNG) from the shipped sample volumes (developers; needs Pillow).

    python Testing/slicer/make_sample_thumbnails.py

brain1_MR.png: the MR slice through the tumour with the tumour outlined in red; colin27_T1_T2like.png: axial
mid-slices of the T1 (left) and the moved T2-like (right). Slices are shown in Slicer's default radiological
orientation (patient right on the left, anterior up).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "MultiModalGen" / "Resources" / "SampleData"
sys.path.insert(0, str(ROOT / "MultiModalGen"))


def axial(array: np.ndarray, k: int) -> np.ndarray:
    """(I, J, K) RAS-ish array -> 2D image rows = anterior..posterior, cols = right..left (radiological)."""
    return np.flipud(array[:, :, k].T)


def grey(slice2d: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(slice2d, [1, 99.5])
    return (np.clip((slice2d - lo) / max(hi - lo, 1e-6), 0, 1) * 255).astype(np.uint8)


def square(rgb: np.ndarray, size: int = 128):
    from PIL import Image

    image = Image.fromarray(rgb)
    image.thumbnail((size, size))
    canvas = Image.new("RGB", (size, size))
    canvas.paste(image, ((size - image.width) // 2, (size - image.height) // 2))
    return canvas


def main() -> int:
    from multimodalgen.io import read_label, read_volume

    out = SAMPLES / "thumbnails"
    out.mkdir(exist_ok=True)
    mr, tumour = read_volume(SAMPLES / "brain1_MR.nrrd"), read_label(SAMPLES / "brain1_tumour.seg.nrrd")
    k = int(np.argmax((tumour.array > 0).sum(axis=(0, 1))))
    g = grey(axial(mr.array, k))
    rgb = np.stack([g] * 3, -1)
    mask = axial(tumour.array > 0, k)
    edge = mask & ~(np.roll(mask, 1, 0) & np.roll(mask, -1, 0) & np.roll(mask, 1, 1) & np.roll(mask, -1, 1))
    rgb[edge] = (230, 40, 40)
    square(rgb).save(out / "brain1_MR.png")
    t1 = read_volume(SAMPLES / "colin27_T1_2mm.nii.gz").array
    t2 = read_volume(SAMPLES / "colin27_T2like_moved_2mm.nii.gz").array
    pair = np.concatenate([grey(axial(t1, t1.shape[2] // 2)), grey(axial(t2, t2.shape[2] // 2))], axis=1)
    square(np.stack([pair] * 3, -1)).save(out / "colin27_T1_T2like.png")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
