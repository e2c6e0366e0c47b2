"""Labels as PNG images (Pillow), one file per label, at a printer's resolution."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from lotrack.render.labels.layout import Bars, Drawing, Matrix, Text
from lotrack.render.labels.symbols import runs
from lotrack.schemas.labels import PT_TO_MM


@lru_cache(maxsize=64)
def _font(bold: bool, size_px: int) -> ImageFont.FreeTypeFont:
    import reportlab

    # ReportLab ships Bitstream Vera; the basic layout engine avoids raqm failures.
    name = "VeraBd.ttf" if bold else "Vera.ttf"
    path = Path(reportlab.__file__).parent / "fonts" / name
    return ImageFont.truetype(str(path), size_px, layout_engine=ImageFont.Layout.BASIC)


def render(drawing: Drawing, dpi: int = 600) -> Image.Image:
    scale = dpi / 25.4  # pixels per mm
    image = Image.new("L", (round(drawing.width * scale), round(drawing.height * scale)), 255)
    pen = ImageDraw.Draw(image)

    def box(x0: float, y0: float, x1: float, y1: float) -> None:
        pen.rectangle((round(x0 * scale), round(y0 * scale), round(x1 * scale) - 1,
                       round(y1 * scale) - 1), fill=0)

    for item in drawing.items:
        if isinstance(item, Text):
            size_px = max(1, round(item.size * PT_TO_MM * scale))
            font = _font(item.bold, size_px)
            # Vera runs wider than the Helvetica the layout measured with: shrink to fit.
            while pen.textlength(item.text, font=font) > item.width * scale and size_px > 4:
                size_px -= 1
                font = _font(item.bold, size_px)
            width = pen.textlength(item.text, font=font) / scale
            x = item.x + {"left": 0, "center": (item.width - width) / 2,
                          "right": item.width - width}[item.align]
            pen.text((x * scale, item.baseline * scale), item.text, font=font, fill=0, anchor="ls")
        elif isinstance(item, Bars):
            for start, length in runs(item.modules):
                left = item.x + start * item.module
                box(left, item.y, left + length * item.module, item.y + item.height)
        elif isinstance(item, Matrix):
            for r, row in enumerate(item.rows):
                top = item.y + r * item.module
                for start, length in runs(row):
                    left = item.x + start * item.module
                    box(left, top, left + length * item.module, top + item.module)
    return image


def write_png(path: Path, drawing: Drawing, dpi: int = 600) -> None:
    render(drawing, dpi).save(path, dpi=(dpi, dpi))
