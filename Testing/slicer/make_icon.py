"""Draw the 128x128 module/extension icon (three overlapping modality discs over a voxel grid) with PIL.

    python Testing/slicer/make_icon.py
    # writes MultiModalGen/Resources/Icons/MultiModalGen.png (module) and Resources/MultiModalGen.png (extension)
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TARGETS = [ROOT / "MultiModalGen" / "Resources" / "Icons" / "MultiModalGen.png",
           ROOT / "Resources" / "MultiModalGen.png"]


def draw(size: int = 128):
    from PIL import Image, ImageDraw

    scale = 4  # supersample for smooth edges
    s = size * scale
    img = Image.new("RGBA", (s, s), (0, 0, 0, 0))
    d = ImageDraw.Draw(img)
    d.rounded_rectangle((4 * scale, 4 * scale, s - 4 * scale, s - 4 * scale), radius=22 * scale, fill=(28, 42, 64, 255))
    step = 14 * scale
    for x in range(18 * scale, s - 16 * scale, step):
        d.line((x, 18 * scale, x, s - 18 * scale), fill=(60, 80, 110, 255), width=scale)
        d.line((18 * scale, x, s - 18 * scale, x), fill=(60, 80, 110, 255), width=scale)
    layer = Image.new("RGBA", (s, s), (0, 0, 0, 0))
    ld = ImageDraw.Draw(layer)
    r = 30 * scale
    for (cx, cy), color in (((50, 52), (235, 90, 70, 170)), ((78, 52), (70, 170, 235, 170)),
                            ((64, 77), (110, 215, 110, 170))):
        ld.ellipse((cx * scale - r, cy * scale - r, cx * scale + r, cy * scale + r), fill=color)
    img = Image.alpha_composite(img, layer)
    d = ImageDraw.Draw(img)
    d.ellipse((56 * scale, 54 * scale, 72 * scale, 70 * scale), outline=(255, 255, 255, 255), width=3 * scale)
    return img.resize((size, size), Image.LANCZOS)


if __name__ == "__main__":
    icon = draw()
    for target in TARGETS:
        target.parent.mkdir(parents=True, exist_ok=True)
        icon.save(target)
        print(target)
