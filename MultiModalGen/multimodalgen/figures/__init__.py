"""The figures every PNG of the package is drawn with (one style): `panels` (slices in Slicer's radiological
screen order, orientation letters), `window` (CT/PET/MR display), `draw` (sheets with outlines, legend, scale bar,
checkerboards, caption). Writers call `save_slices_figure` or `save_checkerboard_figure`."""

from multimodalgen.figures.draw import Outline, save_checkerboard_figure, save_slices_figure

__all__ = ["Outline", "save_slices_figure", "save_checkerboard_figure"]
