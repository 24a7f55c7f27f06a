"""overlay.png: checkerboards of the fixed image with the moving image before and after registration.

Drawn with Pillow (a matplotlib dependency, much faster to import) from `multimodalgen.visualize.checkerboard`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from multimodalgen.volume import Volume


def _panel(array: np.ndarray, size: int = 220) -> np.ndarray:
    """A 2D [0, 1] slice resized (nearest) to fit `size` x `size`, rows flipped so that up is S or A."""
    from PIL import Image

    img = Image.fromarray((np.clip(array[::-1], 0, 1) * 255).astype(np.uint8))
    scale = size / max(img.size)
    img = img.resize((max(1, int(img.size[0] * scale)), max(1, int(img.size[1] * scale))), Image.NEAREST)
    canvas = np.zeros((size, size), np.uint8)
    w, h = img.size
    canvas[(size - h) // 2:(size - h) // 2 + h, (size - w) // 2:(size - w) // 2 + w] = np.asarray(img)
    return canvas


def save_before_after_png(path: str | Path, fixed: Volume, before: Volume, after: Volume, title: str = "") -> Path:
    """Two rows (before / after) x three mid-slices (axial, coronal, sagittal) of fixed|moving checkerboards.

    All three Volumes must be on the fixed grid; slices are shown in RAS orientation.
    """
    from PIL import Image, ImageDraw

    from multimodalgen.io.writers import atomic_path
    from multimodalgen.resample import reorient
    from multimodalgen.visualize import checkerboard

    arrays = [reorient(v, "RAS").array.astype(np.float32) for v in (fixed, before, after)]
    c = tuple(s // 2 for s in arrays[0].shape)

    def slices(a):  # transposed so that rows run along the second display axis (up = S or A)
        return [a[:, :, c[2]].T, a[:, c[1], :].T, a[c[0], :, :].T]

    fs, bs, as_ = (slices(a) for a in arrays)
    size, top = 220, 18
    sheet = np.zeros((top + 2 * (size + top), 3 * size), np.uint8)
    for row, moved in enumerate((bs, as_)):
        for n in range(3):
            y = top + row * (size + top) + top
            sheet[y:y + size, n * size:(n + 1) * size] = _panel(checkerboard(fs[n], moved[n]), size)
    image = Image.fromarray(sheet).convert("RGB")
    draw = ImageDraw.Draw(image)
    draw.text((4, 2), title or "fixed / moving checkerboard", fill=(255, 255, 0))
    for row, name in enumerate(("before", "after")):
        for n, view in enumerate(("axial", "coronal", "sagittal")):
            draw.text((n * size + 4, top + row * (size + top) + 2), f"{name}: {view}", fill=(255, 255, 255))
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")
    return Path(path)
