"""`save_overlay_png`: a thin door to the package's one figure style in `multimodalgen.figures` (radiological views, orientation letters, legend, scale
bar, caption).
"""

from __future__ import annotations

from pathlib import Path

from multimodalgen.volume import Volume


def save_overlay_png(path: str | Path, image: Volume, labels: Volume | None = None, title: str = "",
                     second_image: Volume | None = None, caption: str = "") -> Path:
    """Write a PNG in the package's figure style (`multimodalgen.figures`): the three views of `image` with the
    outlines of `labels` (same grid; legend per segment), or a fixed/moving checkerboard with `second_image`."""
    from multimodalgen.figures import Outline, save_checkerboard_figure, save_slices_figure

    if second_image is not None:
        return save_checkerboard_figure(path, image, [("moving", second_image)], title=title, caption=caption)
    outlines = [Outline(labels, "labels")] if labels is not None else []
    return save_slices_figure(path, image, title=title, caption=caption, outlines=outlines)
