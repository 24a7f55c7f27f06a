"""PNG figures for reports and the demo: orthogonal mid-slices, label contours, checkerboards (matplotlib, Agg).

Arrays are `(I, J, K)` on one grid; slices are shown in radiological-neutral index order (i right, j up) after
reorientation to RAS so that every figure looks the same whatever the file's orientation.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from multimodalgen.io.writers import atomic_path
from multimodalgen.volume import Volume


def _ras_array(volume: Volume) -> np.ndarray:
    from multimodalgen.resample import reorient

    return reorient(volume, "RAS").array


def _aspects(volume: Volume) -> list[float]:
    """Display aspect (height/width of a pixel) of the axial, coronal and sagittal slices, from the voxel size."""
    from multimodalgen.resample import reorient

    sx, sy, sz = reorient(volume, "RAS").spacing
    return [sy / sx, sz / sx, sz / sy]


def _mid_slices(array: np.ndarray, centre: tuple[int, int, int] | None = None) -> list[np.ndarray]:
    """Axial, coronal, sagittal slices of an `(I,J,K)` RAS array, transposed for display (up = S or A)."""
    c = centre or tuple(s // 2 for s in array.shape)
    return [array[:, :, c[2]].T, array[:, c[1], :].T, array[c[0], :, :].T]


def checkerboard(a: np.ndarray, b: np.ndarray, tiles: int = 8) -> np.ndarray:
    """Checkerboard of two same-shape 2D arrays (each scaled to [0,1] by its own 1-99 percentiles)."""
    def scale(x):
        lo, hi = np.percentile(x, (1, 99))
        return np.clip((x - lo) / (hi - lo + 1e-8), 0, 1)

    ii, jj = np.meshgrid(np.arange(a.shape[0]) * tiles // max(1, a.shape[0]),
                         np.arange(a.shape[1]) * tiles // max(1, a.shape[1]), indexing="ij")
    return np.where((ii + jj) % 2 == 0, scale(a), scale(b))


def save_overlay_png(path: str | Path, image: Volume, labels: Volume | None = None, title: str = "",
                     second_image: Volume | None = None) -> Path:
    """Write a PNG with the three mid-slices of `image`, label contours from `labels` (same grid), or a
    checkerboard with `second_image` (same grid) when given."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    img = _ras_array(image).astype(np.float32)
    img = img if img.ndim == 3 else img[0]
    centre = None
    lab = None
    if labels is not None:
        lab = _ras_array(labels)
        if lab.any():
            centre = tuple(int(np.round(np.mean(idx))) for idx in np.nonzero(lab))
    slices = _mid_slices(img, centre)
    other = _mid_slices(_ras_array(second_image).astype(np.float32), centre) if second_image is not None else None
    lab_slices = _mid_slices(lab, centre) if lab is not None else None
    aspects = _aspects(image)
    fig, axes = plt.subplots(1, 3, figsize=(12, 4.2))
    for n, ax in enumerate(axes):
        shown = checkerboard(slices[n], other[n]) if other is not None else slices[n]
        ax.imshow(shown, cmap="gray", origin="lower", interpolation="nearest", aspect=aspects[n])
        if lab_slices is not None and lab_slices[n].any():
            for value in np.unique(lab_slices[n])[1:]:
                ax.contour(lab_slices[n] == value, levels=[0.5], colors=[plt.cm.tab10(int(value) % 10)],
                           linewidths=1.0)
        ax.set_axis_off()
        ax.set_title(("axial", "coronal", "sagittal")[n], fontsize=9)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
    return Path(path)
