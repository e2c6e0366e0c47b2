"""Labels as a PDF: a sheet of N x M labels or one label per page (thermal roll).

Barcodes are painted as vector rectangles, one per bar or run of dark modules, so they
print sharp at any printer resolution.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from reportlab.lib.units import mm
from reportlab.pdfgen.canvas import Canvas

from lotrack.render.labels.layout import FONTS, Bars, Drawing, Matrix, Text
from lotrack.render.labels.symbols import runs
from lotrack.schemas.labels import PAGES_MM, LabelTemplate, SheetSpec


def _text(c: Canvas, item: Text, height: float) -> None:
    c.setFont(FONTS[item.bold], item.size)
    y = (height - item.baseline) * mm
    if item.align == "center":
        c.drawCentredString((item.x + item.width / 2) * mm, y, item.text)
    elif item.align == "right":
        c.drawRightString((item.x + item.width) * mm, y, item.text)
    else:
        c.drawString(item.x * mm, y, item.text)


def _bars(c: Canvas, item: Bars, height: float) -> None:
    path = c.beginPath()
    bottom = (height - item.y - item.height) * mm
    for start, length in runs(item.modules):
        path.rect((item.x + start * item.module) * mm, bottom, length * item.module * mm,
                  item.height * mm)
    c.drawPath(path, stroke=0, fill=1)


def _matrix(c: Canvas, item: Matrix, height: float) -> None:
    path = c.beginPath()
    side = item.module * mm
    for row_index, row in enumerate(item.rows):
        y = (height - item.y - (row_index + 1) * item.module) * mm
        for start, length in runs(row):
            path.rect((item.x + start * item.module) * mm, y, length * side, side)
    c.drawPath(path, stroke=0, fill=1)


def draw(c: Canvas, drawing: Drawing) -> None:
    """Draw one label with its bottom-left corner at the canvas origin."""
    c.setFillColorRGB(0, 0, 0)
    for item in drawing.items:
        if isinstance(item, Text):
            _text(c, item, drawing.height)
        elif isinstance(item, Bars):
            _bars(c, item, drawing.height)
        else:
            _matrix(c, item, drawing.height)


def _slots(sheet: SheetSpec, template: LabelTemplate) -> Iterator[tuple[float, float]]:
    page_h = PAGES_MM[sheet.page][1]
    for row in range(sheet.rows):
        for column in range(sheet.columns):
            x = sheet.left_mm + column * sheet.column_pitch_mm
            top = sheet.top_mm + row * sheet.row_pitch_mm
            yield x * mm, (page_h - top - template.template.height_mm) * mm


def write_pdf(path: Path, drawings: Iterable[Drawing], template: LabelTemplate,
              sheet: SheetSpec | None, title: str, watermark: str | None = None) -> int:
    """Write the labels; returns the number of pages."""
    head = template.template
    page = PAGES_MM[sheet.page] if sheet else (head.width_mm, head.height_mm)
    c = Canvas(str(path), pagesize=(page[0] * mm, page[1] * mm), pageCompression=1)
    c.setTitle(title)
    c.setAuthor("lotrack")
    per_page = sheet.rows * sheet.columns if sheet else 1
    slots: list[tuple[float, float]] = list(_slots(sheet, template)) if sheet else [(0.0, 0.0)]
    pages = 0
    for index, drawing in enumerate(drawings):
        slot = index % per_page
        if slot == 0 and index:
            _finish_page(c, watermark, page)
        if slot == 0:
            pages += 1
        c.saveState()
        c.translate(*slots[slot])
        draw(c, drawing)
        c.restoreState()
    _finish_page(c, watermark, page)
    c.save()
    return pages


def _finish_page(c: Canvas, watermark: str | None, page: tuple[float, float]) -> None:
    if watermark:
        # Labels from a demo or test installation must never pass for real ones.
        c.saveState()
        c.setFillColorRGB(0.85, 0.1, 0.1, alpha=0.35)
        c.setFont("Helvetica-Bold", max(6.0, min(page) * 0.12 / 0.3528))
        c.translate(page[0] * mm / 2, page[1] * mm / 2)
        c.rotate(20)
        c.drawCentredString(0, 0, watermark)
        c.restoreState()
    c.showPage()
