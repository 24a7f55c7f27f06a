"""The one figure style (`multimodalgen.figures`): Slicer's radiological screen order for RAS and LPS volumes,
modality-aware windows, legend entries for every colour drawn, painted slices marked, fixed/moving tiles labelled,
files under 300 kB."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from multimodalgen.figures import Outline, save_checkerboard_figure, save_slices_figure
from multimodalgen.figures.draw import PAINTED_COLOUR, REFERENCE_COLOUR
from multimodalgen.figures.panels import panels, to_ras
from multimodalgen.figures.window import choose_window, to_rgb
from multimodalgen.volume import Volume

SHAPE = (24, 20, 16)


def _affine(kind: str) -> np.ndarray:
    """Voxel -> RAS with the volume centred on 0: "RAS" (i -> R, j -> A, k -> S) or "LPS" (i -> L, j -> P, k -> S)."""
    flips = {"RAS": (1.0, 1.0, 1.0), "LPS": (-1.0, -1.0, 1.0)}[kind]
    affine = np.diag([*(f * s for f, s in zip(flips, (1.5, 1.0, 2.0))), 1.0])
    affine[:3, 3] = -affine[:3, :3] @ (np.array(SHAPE) - 1) / 2
    return affine


def _marked(kind: str, ras_point=(10.0, 6.0, 9.0)) -> Volume:
    """A dim volume with a bright 3-voxel cube at the RAS point (patient right, anterior, superior)."""
    affine = _affine(kind)
    array = np.full(SHAPE, 10.0, np.float32)
    ijk = np.round(np.linalg.solve(affine, [*ras_point, 1.0])[:3]).astype(int)
    array[tuple(slice(c - 1, c + 2) for c in ijk)] = 100.0
    return Volume(array, affine, "T1")


@pytest.mark.parametrize("kind", ["RAS", "LPS"])
def test_panels_show_patient_right_on_screen_left_anterior_and_superior_up(kind):
    volume = _marked(kind)
    array, spacing = to_ras(volume)
    centre = tuple(int(v) for v in np.argwhere(array == 100.0).mean(axis=0).round())
    views = {p.view: p for p in panels(array, spacing, centre)}
    for view, panel in views.items():
        rows, cols = np.nonzero(panel.array == 100.0)
        assert rows.size, view
        h, w = panel.array.shape
        assert cols.mean() < w / 2, f"{view}: the marker (patient right / anterior) is not on the screen's left"
        assert rows.mean() < h / 2, f"{view}: the marker (anterior / superior) is not in the screen's top half"
    assert views["axial"].letters == ("R", "L", "A", "P")
    assert views["coronal"].letters == ("R", "L", "S", "I")
    assert views["sagittal"].letters == ("A", "P", "S", "I")
    assert views["axial"].pixel_mm == (1.5, 1.0) and views["coronal"].pixel_mm == (1.5, 2.0)


def test_ras_and_lps_files_give_the_same_panels():
    a, b = (to_ras(_marked(kind)) for kind in ("RAS", "LPS"))
    for pa, pb in zip(panels(*a), panels(*b)):
        np.testing.assert_array_equal(pa.array, pb.array)


def test_windows_follow_the_modality():
    ct = np.linspace(-1000, 1500, 1000).reshape(10, 10, 10)
    window = choose_window(ct, "CT")
    assert (window.low, window.high) == (0.0, 80.0) and "brain window" in window.label
    assert choose_window(ct, "CT", "bone").high == 1500.0
    rgb = to_rgb(np.array([[-100.0, 40.0, 500.0]]), window)
    assert rgb[0, :, 0].tolist() == [0, 127, 255]  # below/inside/above the brain window
    pet = choose_window(np.random.default_rng(0).gamma(2, size=(8, 8, 8)), "PET")
    assert pet.colour_map == "heat"
    coloured = to_rgb(np.array([[pet.low, (pet.low + pet.high) / 2, pet.high]]), pet)
    assert not np.all(coloured[0, 1, 0] == coloured[0, 1]), "PET is drawn in colour"
    assert choose_window(ct, "T1").colour_map == "grey"
    unnamed = choose_window(ct, None)  # e.g. register's fixed image, read without a modality
    assert (unnamed.low, unnamed.high) == (0.0, 80.0) and "Hounsfield" in unnamed.label
    assert "CT" not in choose_window(np.linspace(0, 900, 1000), None).label


def _count(path, colour, tolerance=12) -> int:
    pixels = np.asarray(Image.open(path).convert("RGB")).astype(int)
    return int((np.abs(pixels - np.array(colour)).max(axis=2) <= tolerance).sum())


def test_slices_figure_has_a_legend_entry_per_colour_painted_slices_and_a_caption(tmp_path):
    image = _marked("LPS")
    result = np.zeros(SHAPE, np.uint8)
    result[8:16, 6:14, 4:12] = 1
    result[16:20, 6:14, 4:12] = 2
    reference = np.zeros(SHAPE, np.uint8)
    reference[9:17, 7:15, 4:12] = 1
    painted = np.zeros(SHAPE, np.uint8)
    painted[:, :, [5, 9]] = result[:, :, [5, 9]] > 0
    labels = Volume(result, image.affine, "LABEL", {"segments": [
        {"label": 1, "name": "tumour", "color": [1.0, 0.0, 0.0]}, {"label": 2, "name": "oedema",
                                                                  "color": [0.0, 0.0, 1.0]}]})
    path = save_slices_figure(tmp_path / "fig.png", image, title="case X", caption="Case X: Dice 0.812.",
                              outlines=[Outline(labels, "result"),
                                        Outline(Volume(reference, image.affine, "LABEL"), "reference",
                                                REFERENCE_COLOUR),
                                        Outline(Volume(painted, image.affine, "LABEL"), "painted", PAINTED_COLOUR,
                                                painted=True)])
    png = Image.open(path)
    legend = png.text["Legend"].split("; ")
    assert legend == ["result: tumour", "result: oedema", "reference",
                      "painted (outline, painted slices dashed)"]
    assert "Dice 0.812" in png.text["Description"] and "patient right on screen left" in png.text["Description"]
    assert png.text["Views"].count("R L A P") == 1 and "A P S I" in png.text["Views"]
    assert path.stat().st_size <= 300_000
    for colour in ((255, 0, 0), (0, 0, 255), REFERENCE_COLOUR, PAINTED_COLOUR):
        assert _count(path, colour) > 20, f"colour {colour} not drawn"


def test_painted_slices_are_dashed_lines_in_the_views_that_cross_them(tmp_path):
    image = _marked("RAS")
    painted = np.zeros(SHAPE, np.uint8)
    painted[10:14, 8:12, 5] = 1  # one painted axial slice: a dashed line in coronal and sagittal
    with_line = save_slices_figure(tmp_path / "a.png", image, title="t", caption="c",
                                   outlines=[Outline(Volume(painted, image.affine, "LABEL"), "painted",
                                                     PAINTED_COLOUR, painted=True)])
    outline_only = save_slices_figure(tmp_path / "b.png", image, title="t", caption="c",
                                      outlines=[Outline(Volume(painted, image.affine, "LABEL"), "painted",
                                                        PAINTED_COLOUR)])
    assert _count(with_line, PAINTED_COLOUR) > _count(outline_only, PAINTED_COLOUR) + 50


def test_checkerboard_labels_fixed_and_moving_and_stays_small(tmp_path):
    fixed = _marked("RAS")
    moving = Volume(np.roll(fixed.array, 3, axis=0), fixed.affine, "T2")
    path = save_checkerboard_figure(tmp_path / "overlay.png", fixed, [("before", moving), ("after", fixed)],
                                    title="reg", caption="Case Y: dissimilarity 0.4 -> 0.1.")
    png = Image.open(path)
    assert png.text["Legend"] == "fixed image: grey tiles (F); moving image: green tiles (M)"
    assert png.text["Views"].count("before:") == 3 and png.text["Views"].count("after:") == 3
    assert path.stat().st_size <= 300_000 and png.size[0] == 3 * 240 + 4 * 8
    assert _count(path, (255, 255, 0), tolerance=0) > 100, "orientation letters keep their exact yellow"
    assert _count(path, (70, 200, 70), tolerance=0) > 50, "the legend's moving colour is drawn exactly"


def test_real_size_ct_figure_stays_under_300_kb(tmp_path):
    rng = np.random.default_rng(1)
    array = rng.normal(40, 30, (160, 160, 60)).astype(np.float32)  # noisy, hard to compress
    ct = Volume(array, np.diag([0.7, 0.7, 2.5, 1.0]), "CT")
    path = save_slices_figure(tmp_path / "ct.png", ct, title="ct", caption="noise")
    assert path.stat().st_size <= 300_000 and "CT brain window" in Image.open(path).text["Description"]
