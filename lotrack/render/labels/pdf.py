"""Labels as a PDF: a sheet of N x M labels or one label per page (thermal roll).

Barcodes are painted as vector rectangles, one per run of dark modules, so they print
sharp at any printer resolution. A sheet of 2,000 labels has some 280,000 rectangles:
they are written as PDF operators in module units under one transformation per symbol
(small integers, formatted by Python) instead of through ReportLab's path objects, whose
pure-Python number formatting of four millimetre coordinates per rectangle was most of
the time of a print. Text goes through ReportLab's text objects, once per distinct line.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from re import compile as re_compile

from reportlab import rl_config
from reportlab.lib.units import mm
from reportlab.pdfbase.pdfmetrics import stringWidth
from reportlab.pdfgen.canvas import Canvas

from lotrack.render.labels.layout import FONTS, Bars, Drawing, Matrix, Text
from lotrack.render.labels.symbols import runs
from lotrack.schemas.labels import PAGES_MM, LabelTemplate, SheetSpec


def _num(value: float) -> str:
    """A coordinate in points, to a thousandth of a point (under a micrometre)."""
    return f"{value:.3f}".rstrip("0").rstrip(".") or "0"


def _bars(item: Bars, height: float) -> str:
    # x in modules, y in bar heights: each bar is "start 0 length 1 re".
    bottom = (height - item.y - item.height) * mm
    cm = f"{_num(item.module * mm)} 0 0 {_num(item.height * mm)} {_num(item.x * mm)} {_num(bottom)}"
    bars = " ".join(f"{start} 0 {length} 1 re" for start, length in runs(item.modules))
    return f"q {cm} cm {bars} f Q"


def _matrix(item: Matrix, height: float) -> str:
    # Module units with y running down the symbol, so row r is y = r.
    side = _num(item.module * mm)
    cm = f"{side} 0 0 -{side} {_num(item.x * mm)} {_num((height - item.y) * mm)}"
    # Runs along rows only: merging equal runs of the rows below as well saved a tenth
    # of the rectangles and cost more time than it saved.
    boxes = " ".join(filter(None, (str(index).join(_row_pieces(row))
                                   for index, row in enumerate(item.rows))))
    return f"q {cm} cm {boxes} f Q"


# Text ReportLab writes as it is: printable ASCII without the PDF string escapes \ ( ).
_PLAIN = re_compile(r"[ -'*-\[\]-~]+").fullmatch


@lru_cache(maxsize=65536)
def _row_pieces(row: str) -> tuple[str, ...]:
    """A row's rectangles ("start r length 1 re ...") cut where its number r goes. Rows
    recur across a sheet (the timing and finder rows are in every symbol, and a lot's
    symbols share most of their content): a 2,000-label sheet has a third as many
    distinct rows as rows, and formatting the rectangles was most of the drawing."""
    return tuple(" ".join(f"{start} \0 {length} 1 re" for start, length in runs(row))
                 .split("\0"))


class _Painter:
    """Writes labels onto one canvas; a line of text seen before reuses its operators (the
    trial, storage and sponsor lines are the same on every label)."""

    def __init__(self, c: Canvas) -> None:
        self.c = c
        self._texts: dict[tuple[Text, float], str] = {}
        # A line's operators around its text, by where and how it is set: a line that differs
        # from another only in its text (the serial) is the same operators around another
        # string, so ReportLab's text object is asked once per place, not once per line.
        self._around: dict[tuple[float, float, float, bool], tuple[str, str]] = {}
        # Layout hands out one item for a line every label shares: found by identity
        # first, before hashing its fields. Each entry holds its item, so no id is reused.
        self._same: dict[tuple[int, float], tuple[Text, str]] = {}

    def label(self, drawing: Drawing, x: float, y: float) -> None:
        parts = [f"q 1 0 0 1 {_num(x)} {_num(y)} cm 0 0 0 rg"]
        for item in drawing.items:
            if isinstance(item, Text):
                parts.append(self._text(item, drawing.height))
            elif isinstance(item, Bars):
                parts.append(_bars(item, drawing.height))
            else:
                parts.append(_matrix(item, drawing.height))
        parts.append("Q")
        self.c.addLiteral("\n".join(parts))

    def _text(self, item: Text, height: float) -> str:
        seen = self._same.get((id(item), height))
        if seen is not None:
            return seen[1]
        code = self._texts.get((item, height))
        if code is None:
            code = self._texts[(item, height)] = self._text_code(item, height)
        self._same[(id(item), height)] = (item, code)
        return code

    def _text_code(self, item: Text, height: float) -> str:
        font = FONTS[item.bold]
        x = item.x * mm
        if item.align in ("center", "right"):
            room = item.width * mm - stringWidth(item.text, font, item.size)
            x += room / 2 if item.align == "center" else room
        y = (height - item.baseline) * mm
        if not _PLAIN(item.text):
            return self._reportlab_code(font, item.size, x, y, item.text)
        place = (x, y, item.size, item.bold)
        around = self._around.get(place)
        if around is None:
            # "BT ... Tm /F1 5 Tf 6 TL (" + text + ") Tj T* ET", cut where the text goes.
            code = self._reportlab_code(font, item.size, x, y, "X")
            cut = code.rindex("(X)")
            around = self._around[place] = (code[:cut + 1], code[cut + 2:])
        return around[0] + item.text + around[1]

    def _reportlab_code(self, font: str, size: float, x: float, y: float, line: str) -> str:
        text = self.c.beginText(x, y)
        text.setFont(font, size)  # also adds the font to the document
        text.textLine(line)  # as drawString does: its T* ends a line for text extraction
        return text.getCode()


def _slots(sheet: SheetSpec, template: LabelTemplate) -> list[tuple[float, float]]:
    page_h = PAGES_MM[sheet.page][1]
    out = []
    for row in range(sheet.rows):
        for column in range(sheet.columns):
            x = sheet.left_mm + column * sheet.column_pitch_mm
            top = sheet.top_mm + row * sheet.row_pitch_mm
            out.append((x * mm, (page_h - top - template.template.height_mm) * mm))
    return out


def write_pdf(path: Path, drawings: Iterable[Drawing], template: LabelTemplate,
              sheet: SheetSpec | None, title: str, watermark: str | None = None) -> int:
    """Write the labels; returns the number of pages."""
    head = template.template
    page = PAGES_MM[sheet.page] if sheet else (head.width_mm, head.height_mm)
    c = Canvas(str(path), pagesize=(page[0] * mm, page[1] * mm), pageCompression=1)
    c.setTitle(title)
    c.setAuthor("lotrack")
    per_page = sheet.rows * sheet.columns if sheet else 1
    slots = _slots(sheet, template) if sheet else [(0.0, 0.0)]
    painter = _Painter(c)
    pages = 0
    for index, drawing in enumerate(drawings):
        slot = index % per_page
        if slot == 0 and index:
            _finish_page(c, watermark, page)
        if slot == 0:
            pages += 1
        painter.label(drawing, *slots[slot])
    _finish_page(c, watermark, page)
    with _binary_streams():
        c.save()
    return pages


@contextmanager
def _binary_streams() -> Iterator[None]:
    """Page streams compressed but not also ASCII85-encoded, ReportLab's default: its
    pure-Python encoder took a fifth of the time of a 2,000-label sheet, for a larger file."""
    saved = rl_config.useA85
    rl_config.useA85 = 0
    try:
        yield
    finally:
        rl_config.useA85 = saved


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
