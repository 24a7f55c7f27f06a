"""overlay.png: checkerboards of the fixed image with the moving image before and after registration, drawn in the
package's one figure style (`multimodalgen.figures`: radiological views, orientation letters, fixed/moving tiles
labelled, scale bar, caption; Pillow only, fast to import).
"""

from __future__ import annotations

from pathlib import Path

from multimodalgen.volume import Volume


def save_before_after_png(path: str | Path, fixed: Volume, before: Volume, after: Volume, title: str = "",
                          caption: str = "") -> Path:
    """Two rows (before / after) x three views (axial, coronal, sagittal) of fixed|moving checkerboards.

    All three Volumes must be on the fixed grid.
    """
    from multimodalgen.figures import save_checkerboard_figure

    return save_checkerboard_figure(path, fixed, [("before", before), ("after", after)],
                                    title=title or "fixed / moving checkerboard",
                                    caption=caption or "Moving image on the fixed grid before and after registration.")
