"""The one figure style of every PNG the package writes (demo, registration overlay, few-shot, personalized):
three panels per row (axial, coronal, sagittal) in Slicer's default radiological views with orientation letters on
every panel, a scale bar in mm, outlines with a legend entry for every colour (the result per segment, the reference
in its own colour, painted slices marked), checkerboards with fixed and moving tiles labelled, modality-aware
windowing, and a caption that says the case, the numbers and the display convention. Drawn with Pillow (fast to
import; no matplotlib), saved as a palette PNG (well under 300 kB).
"""

from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path

import numpy as np

from multimodalgen.figures.panels import VIEWS, Panel, fixed_axis, panels, screen_position, screen_slice, to_ras
from multimodalgen.figures.window import Window, choose_window, to_rgb
from multimodalgen.volume import Volume

PANEL_PX = 240
GAP = 8
CONVENTION = ("Display: radiological convention as in 3D Slicer's default views (patient right on screen left, "
              "anterior on the left in sagittal); letters mark patient directions; scale bar in mm.")
REFERENCE_COLOUR = (0, 230, 255)
PAINTED_COLOUR = (255, 220, 0)
MOVING_TINT = np.array([0.45, 1.0, 0.45], np.float32)


@dataclasses.dataclass
class Outline:
    """A label map drawn as outlines on the image (same grid as the image).

    `name`: the legend text (per-segment names are added when `colour` is None); `colour`: one RGB (0-255) colour
    for the whole map (e.g. a reference), or None for each segment's own colour (`metadata["segments"]` "color",
    else `terminology.default_color`); `painted`: the map is the user's painting (its slices are marked).
    """

    labels: Volume
    name: str
    colour: tuple[int, int, int] | None = None
    painted: bool = False


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        return ImageFont.load_default()


def _fit(panel: Panel) -> tuple[tuple[int, int], tuple[int, int], float]:
    """((width, height) px on screen, (x, y) offset in the panel box, px per mm) of a panel drawn to scale."""
    rows, cols = panel.array.shape
    width_mm, height_mm = cols * panel.pixel_mm[0], rows * panel.pixel_mm[1]
    scale = PANEL_PX / max(width_mm, height_mm)
    size = (max(1, round(width_mm * scale)), max(1, round(height_mm * scale)))
    return size, ((PANEL_PX - size[0]) // 2, (PANEL_PX - size[1]) // 2), scale


def _nearest(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    rows = (np.arange(size[1]) * array.shape[0] / size[1]).astype(int)
    cols = (np.arange(size[0]) * array.shape[1] / size[0]).astype(int)
    return array[np.ix_(rows, cols)]


def _boundary(mask: np.ndarray) -> np.ndarray:
    """Pixels of `mask` with a 4-neighbour outside it, thickened to 2 px."""
    padded = np.pad(mask, 1)
    inner = padded[1:-1, 1:-1] & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    edge = mask & ~inner
    edge[1:, :] |= edge[:-1, :]
    return edge


def _segment_colours(outline: Outline) -> list[tuple[int, str, tuple[int, int, int]]]:
    """[(value, legend name, RGB 0-255)] of the values present in the outline's label map."""
    from multimodalgen.terminology import default_color

    present = [int(v) for v in np.unique(outline.labels.array) if v > 0]
    if outline.colour is not None:
        return [(v, outline.name, outline.colour) for v in present]
    named = {int(s["label"]): s for s in outline.labels.metadata.get("segments", []) or [] if "label" in s}
    out = []
    for value in present:
        segment = named.get(value, {})
        colour = segment.get("color") or default_color(value)
        rgb = tuple(int(round(c * 255)) if max(colour) <= 1 else int(c) for c in colour[:3])
        out.append((value, f"{outline.name}: {segment.get('name', f'label {value}')}", rgb))
    return out


def _painted_planes(ras_mask: np.ndarray) -> tuple[int, list[int]] | None:
    """(RAS axis, plane indices) along which a painting lies (the axis it fills the fewest planes of)."""
    if not ras_mask.any():
        return None
    options = []
    for axis in range(3):
        planes = np.nonzero(ras_mask.any(axis=tuple(a for a in range(3) if a != axis)))[0]
        options.append((len(planes) / ras_mask.shape[axis], axis, [int(p) for p in planes]))
    _, axis, planes = min(options)
    return axis, planes


class _Sheet:
    """A white-on-black sheet: title, rows of three panels, legend, caption."""

    def __init__(self, n_rows: int, title: str, legend: list[tuple[str, tuple[int, int, int]]], caption: str):
        from PIL import Image, ImageDraw

        self.width = 3 * PANEL_PX + 4 * GAP
        self.caption = textwrap.wrap(caption, 118)
        self.legend = legend
        self.title_h, self.label_h = 24, 16
        legend_rows = (len(legend) + 2) // 3
        height = (self.title_h + n_rows * (self.label_h + PANEL_PX + GAP) + legend_rows * 18 + 6
                  + len(self.caption) * 15 + 8)
        self.image = Image.new("RGB", (self.width, height), (0, 0, 0))
        self.draw = ImageDraw.Draw(self.image)
        self.draw.text((GAP, 4), title, fill=(255, 255, 255), font=_font(15))
        self.extra_colours: list[tuple[int, int, int]] = []  # outline colours not in the legend
        self.views: list[str] = []  # "axial: R L A P" per panel drawn (edge letters left, right, top, bottom)

    def box(self, row: int, col: int) -> tuple[int, int]:
        """Top-left pixel of panel (row, col)."""
        return GAP + col * (PANEL_PX + GAP), self.title_h + row * (self.label_h + PANEL_PX + GAP) + self.label_h

    def panel(self, row: int, col: int, rgb: np.ndarray, panel: Panel, label: str, scale_bar: bool) -> None:
        from PIL import Image

        x0, y0 = self.box(row, col)
        size, (dx, dy), px_per_mm = _fit(panel)
        self.image.paste(Image.fromarray(rgb).resize(size, Image.BILINEAR), (x0 + dx, y0 + dy))
        self.draw.text((x0, y0 - self.label_h + 1), label, fill=(220, 220, 220), font=_font(12))
        left, right, top, bottom = panel.letters  # at the edges of the image itself, inside it
        self.views.append(f"{label}: {left} {right} {top} {bottom}")
        font = _font(14)
        style = {"fill": (255, 255, 0), "font": font, "stroke_width": 2, "stroke_fill": (0, 0, 0)}
        xl, xr, yt, yb_ = x0 + dx, x0 + dx + size[0], y0 + dy, y0 + dy + size[1]
        self.draw.text((xl + 3, (yt + yb_) // 2), left, anchor="lm", **style)
        self.draw.text((xr - 3, (yt + yb_) // 2), right, anchor="rm", **style)
        self.draw.text(((xl + xr) // 2, yt + 2), top, anchor="mt", **style)
        self.draw.text(((xl + xr) // 2, yb_ - 2), bottom, anchor="mb", **style)
        if scale_bar:
            width_mm = panel.array.shape[1] * panel.pixel_mm[0]
            length = max([v for v in (5, 10, 20, 50, 100) if v <= 0.3 * width_mm] or [5])
            bar = int(round(length * px_per_mm))
            yb = y0 + dy + size[1] - 24
            self.draw.rectangle((xl + 8, yb, xl + 8 + bar, yb + 3), fill=(255, 255, 255))
            self.draw.text((xl + 8, yb - 2), f"{length} mm", anchor="lb", fill=(255, 255, 255), font=_font(11),
                           stroke_width=1, stroke_fill=(0, 0, 0))

    def overlay(self, row: int, col: int, panel: Panel, mask_rgb: list[tuple[np.ndarray, tuple[int, int, int]]]):
        """Outline each 2D mask (screen order, panel grid) in its colour on panel (row, col)."""
        x0, y0 = self.box(row, col)
        size, (dx, dy), _ = _fit(panel)
        pixels = np.asarray(self.image).copy()
        for mask, colour in mask_rgb:
            self.extra_colours.append(tuple(colour))
            edge = _boundary(_nearest(mask, size))
            region = pixels[y0 + dy:y0 + dy + size[1], x0 + dx:x0 + dx + size[0]]
            region[edge] = colour
        from PIL import Image, ImageDraw

        self.image = Image.fromarray(pixels)
        self.draw = ImageDraw.Draw(self.image)

    def dashed(self, row: int, col: int, panel: Panel, kind: str, index: int, colour) -> None:
        """A dashed line across panel (row, col) at screen column/row `index` of the panel's grid."""
        x0, y0 = self.box(row, col)
        size, (dx, dy), _ = _fit(panel)
        rows, cols = panel.array.shape
        if kind == "col":
            x = x0 + dx + int((index + 0.5) * size[0] / cols)
            for y in range(y0 + dy, y0 + dy + size[1], 8):
                self.draw.line((x, y, x, min(y + 4, y0 + dy + size[1])), fill=colour, width=1)
        else:
            y = y0 + dy + int((index + 0.5) * size[1] / rows)
            for x in range(x0 + dx, x0 + dx + size[0], 8):
                self.draw.line((x, y, min(x + 4, x0 + dx + size[0]), y), fill=colour, width=1)

    def _paletted(self):
        """The sheet as an 8-bit palette image: the image content in up to 224 median-cut colours, and the exact
        colours of letters, text, legend and outlines kept exactly (so the legend's colours are the drawn ones)."""
        from PIL import Image

        fixed = [(255, 255, 0), (255, 255, 255), (200, 200, 200), (220, 220, 220), (0, 0, 0), REFERENCE_COLOUR,
                 PAINTED_COLOUR] + [colour for _, colour in self.legend] + list(self.extra_colours)
        fixed = list(dict.fromkeys(tuple(int(c) for c in colour) for colour in fixed))[:32]
        n_image = 256 - len(fixed)
        quantized = self.image.quantize(colors=n_image, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
        index = np.asarray(quantized).copy()
        rgb = np.asarray(self.image).astype(np.int32)
        key = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]  # one int per pixel: one compare per colour
        for k, (r, g, b) in enumerate(fixed):
            index[key == ((r << 16) | (g << 8) | b)] = n_image + k
        palette = quantized.getpalette()[:3 * n_image]
        palette += [0] * (3 * n_image - len(palette)) + [c for colour in fixed for c in colour]
        out = Image.fromarray(index.astype(np.uint8), "P")
        out.putpalette(palette)
        return out

    def save(self, path: str | Path) -> Path:
        from PIL import PngImagePlugin

        from multimodalgen.io.writers import atomic_path

        top = self.image.height - (len(self.caption) * 15 + 8) - ((len(self.legend) + 2) // 3) * 18 - 6
        for n, (text, colour) in enumerate(self.legend):
            x, y = GAP + (n % 3) * (self.width // 3), top + (n // 3) * 18 + 4
            self.draw.rectangle((x, y + 2, x + 12, y + 12), fill=colour, outline=(255, 255, 255))
            self.draw.text((x + 18, y), text, fill=(255, 255, 255), font=_font(12))
        y = self.image.height - len(self.caption) * 15 - 6
        for line in self.caption:
            self.draw.text((GAP, y), line, fill=(200, 200, 200), font=_font(12))
            y += 15
        small = self._paletted()
        info = PngImagePlugin.PngInfo()  # the legend and caption as text too (searchable, and read by the tests)
        info.add_text("Legend", "; ".join(text for text, _ in self.legend))
        info.add_text("Description", " ".join(self.caption))
        info.add_text("Views", "; ".join(self.views))
        with atomic_path(path) as tmp:
            small.save(tmp, format="PNG", optimize=True, pnginfo=info)
        return Path(path)


def _centre(image_ras: np.ndarray, outlines_ras: list[np.ndarray]) -> tuple[int, int, int]:
    """Centre of the first non-empty outline (so the panels cut through the structure), else the middle."""
    for mask in outlines_ras:
        if mask.any():
            return tuple(int(round(np.mean(idx))) for idx in np.nonzero(mask))
    return tuple(s // 2 for s in image_ras.shape)


def save_slices_figure(path: str | Path, image: Volume, *, title: str, caption: str,
                       outlines: list[Outline] | tuple = (), ct_window: str = "brain") -> Path:
    """One row of axial / coronal / sagittal panels of `image` with `outlines` (label maps on the image's grid).

    The panels cut through the centre of the first non-empty outline. The legend has one entry per colour drawn
    (painted slices as a dashed line); the caption is `caption` followed by the window and the display convention.
    """
    array, spacing = to_ras(image)
    window = choose_window(array, image.modality, ct_window)
    masks = [to_ras(o.labels)[0] for o in outlines]
    centre = _centre(array, [m for m, o in zip(masks, outlines) if not o.painted] + masks)
    legend: list[tuple[str, tuple[int, int, int]]] = []
    drawn = []
    for outline, ras in zip(outlines, masks):
        colours = _segment_colours(outline)
        drawn.append((outline, ras, colours))
        for _value, name, colour in colours if outline.colour is None else colours[:1]:
            legend.append((name + (" (outline, painted slices dashed)" if outline.painted else ""), colour))
    sheet = _Sheet(1, title, legend, f"{caption} Window: {window.label}. {CONVENTION}".strip())
    views = panels(array, spacing, centre)
    for col, panel in enumerate(views):
        sheet.panel(0, col, to_rgb(panel.array, window), panel, f"{panel.view} (slice {panel.index})", col == 0)
        masks_2d = []
        for outline, ras, colours in drawn:
            flat = screen_slice(ras, panel.view, panel.index)
            masks_2d += [(flat == value, colour) for value, _name, colour in colours]
        sheet.overlay(0, col, panel, masks_2d)
        for outline, ras, colours in drawn:
            planes = _painted_planes(ras > 0) if outline.painted else None
            if planes is None:
                continue
            axis, indices = planes
            for index in indices:
                where = screen_position(panel.view, axis, index, ras.shape)
                if where is not None:
                    sheet.dashed(0, col, panel, where[0], where[1], colours[0][2] if colours else PAINTED_COLOUR)
    return sheet.save(path)


def save_checkerboard_figure(path: str | Path, fixed: Volume, rows: list[tuple[str, Volume]], *, title: str,
                             caption: str, ct_window: str = "brain") -> Path:
    """Rows of fixed / moving checkerboards (each moving Volume on the fixed grid): fixed tiles in grey, moving tiles
    tinted green, the first two tiles of each panel lettered F and M, one legend entry each."""
    fixed_ras, spacing = to_ras(fixed)
    fixed_window = choose_window(fixed_ras, fixed.modality, ct_window)
    legend = [("fixed image: grey tiles (F)", (160, 160, 160)), ("moving image: green tiles (M)", (70, 200, 70))]
    sheet = _Sheet(len(rows), title, legend, f"{caption} Fixed window: {fixed_window.label}. {CONVENTION}".strip())
    centre = tuple(s // 2 for s in fixed_ras.shape)
    from PIL import Image

    for r, (name, moving) in enumerate(rows):
        moving_ras, _ = to_ras(moving)
        moving_window = choose_window(moving_ras, moving.modality, ct_window)
        for col, (fp, mp) in enumerate(zip(panels(fixed_ras, spacing, centre), panels(moving_ras, spacing, centre))):
            size, _, _ = _fit(fp)
            f_rgb = np.asarray(Image.fromarray(to_rgb(fp.array, fixed_window)).resize(size, Image.BILINEAR))
            m_rgb = np.asarray(Image.fromarray(to_rgb(mp.array, moving_window)).resize(size, Image.BILINEAR))
            tile = max(8, PANEL_PX // 8)
            yy, xx = np.indices(f_rgb.shape[:2])
            moving_tile = ((yy // tile + xx // tile) % 2 == 1)[..., None]
            rgb = np.where(moving_tile, (m_rgb * MOVING_TINT).astype(np.uint8), f_rgb)
            scaled = Panel(fp.view, rgb[..., 0], (fp.pixel_mm[0] * fp.array.shape[1] / size[0],
                                                 fp.pixel_mm[1] * fp.array.shape[0] / size[1]), fp.index, fp.letters)
            sheet.panel(r, col, rgb, scaled, f"{name}: {fp.view} (slice {fp.index})", col == 0)
            x0, y0 = sheet.box(r, col)
            _, (dx, dy), _ = _fit(scaled)
            for n, letter in enumerate("FM"):
                sheet.draw.text((x0 + dx + n * tile + tile // 2, y0 + dy + tile // 2), letter, anchor="mm",
                                fill=(255, 255, 255), font=_font(11), stroke_width=1, stroke_fill=(0, 0, 0))
    return sheet.save(path)


__all__ = ["Outline", "save_slices_figure", "save_checkerboard_figure", "VIEWS", "fixed_axis", "Window"]
