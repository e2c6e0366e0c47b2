"""One label laid out in millimetres from its top-left corner; every output draws this."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from lotrack import gs1
from lotrack.errors import InvalidInput
from lotrack.render.labels import symbols
from lotrack.schemas.labels import PT_TO_MM, BarcodeSpec, LabelTemplate, TextSpec

FONTS = {False: "Helvetica", True: "Helvetica-Bold"}


@dataclass(frozen=True)
class LabelData:
    """What one label shows: its subject, its text fields and its machine-readable content."""

    subject: str  # the vial serial, box path or dose id
    fields: dict[str, str]
    gs1: list[tuple[str, str]] | None  # None when the product has no GTIN
    print_number: int = 1

    @property
    def print_mark(self) -> str:
        return f"REPRINT {self.print_number}" if self.print_number > 1 else ""


@dataclass(frozen=True)
class Text:
    x: float  # left edge of the text's box
    baseline: float
    width: float
    size: float
    bold: bool
    align: str
    text: str


@dataclass(frozen=True)
class Bars:
    """A 1D symbol: modules left to right, `module` mm wide each, quiet zones included in x."""

    x: float
    y: float
    height: float
    module: float
    modules: str
    symbol: str
    content: str  # what a scanner should read, for outputs (ZPL) that encode it themselves
    gs1: list[tuple[str, str]] | None


@dataclass(frozen=True)
class Matrix:
    x: float
    y: float
    module: float
    rows: tuple[str, ...]
    content: str
    gs1: list[tuple[str, str]] | None


@dataclass
class Drawing:
    width: float
    height: float
    subject: str
    items: list[Text | Bars | Matrix] = field(default_factory=list)


def text_width_mm(text: str, size: float, bold: bool) -> float:
    from reportlab.pdfbase.pdfmetrics import stringWidth

    return stringWidth(text, FONTS[bold], size) * PT_TO_MM


def _applies(when: str, has_gs1: bool) -> bool:
    return when == "always" or (when == "gs1") == has_gs1


def _text(spec: TextSpec, data: LabelData, values: dict[str, str], floor: float,
          placed: dict[tuple[int, str], Text | None]) -> Text | None:
    # format_map: format(**values) copied the label's dict of fields for every line.
    text = spec.text.format_map(values).strip()
    key = (id(spec), text)
    if key in placed:  # a line seen before, and found to fit
        return placed[key]
    if not text:
        placed[key] = None
        return None
    item, needed = _placed(spec, text, floor)
    if needed > spec.width_mm + 1e-6:
        # A label must never be printed with a field cut off.
        raise InvalidInput(f"label {data.subject}: {text!r} needs {needed:.1f} mm at "
                           f"{item.size:g} pt but the template gives {spec.width_mm:g} mm")
    placed[key] = item
    return item


def _placed(spec: TextSpec, text: str, floor: float) -> tuple[Text, float]:
    """The line as drawn, and the mm it needs."""
    size, needed = _fit(text, spec.size_pt, spec.bold, spec.width_mm, floor)
    baseline = spec.y_mm + spec.size_pt * PT_TO_MM * 0.95
    return Text(spec.x_mm, baseline, spec.width_mm, size, spec.bold, spec.align, text), needed


def _fit(text: str, size: float, bold: bool, width: float, floor: float) -> tuple[float, float]:
    """The size `text` fits `width` mm at, shrinking by 0.25 pt down to `floor`, and the mm it
    then needs."""
    needed = text_width_mm(text, size, bold)
    while needed > width and size - 0.25 >= floor:
        size -= 0.25
        needed = text_width_mm(text, size, bold)
    return size, needed


def _linear(spec: BarcodeSpec, data: LabelData) -> list[Text | Bars]:
    fields = data.gs1 if spec.content == "gs1" else None
    modules = symbols.linear_modules(spec.symbol, fields, data.subject)
    total = len(modules) + 2 * symbols.QUIET_MODULES
    module = spec.width_mm / total
    if module < spec.min_module_mm:
        raise InvalidInput(f"label {data.subject}: the {spec.symbol} symbol has {total} modules; in "
                           f"{spec.width_mm:g} mm each would be {module:.3f} mm, under the "
                           f"template's minimum {spec.min_module_mm:g} mm")
    hri_height = spec.hri_size_pt * PT_TO_MM * 1.2 if spec.hri else 0.0
    content = gs1.hri(fields) if fields else data.subject
    bars = Bars(spec.x_mm + symbols.QUIET_MODULES * module, spec.y_mm, spec.height_mm - hri_height,
                module, modules, spec.symbol, content, fields)
    out: list[Text | Bars] = [bars]
    if spec.hri:
        baseline = spec.y_mm + spec.height_mm - spec.hri_size_pt * PT_TO_MM * 0.2
        size = spec.hri_size_pt
        while text_width_mm(content, size, False) > spec.width_mm and size > 3:
            size -= 0.25
        out.append(Text(spec.x_mm, baseline, spec.width_mm, size, False, "center", content))
    return out


def _matrix(spec: BarcodeSpec, data: LabelData) -> Matrix:
    fields = data.gs1 if spec.content == "gs1" else None
    content = gs1.hri(fields) if fields else data.subject
    rows = symbols.datamatrix_rows(content, fields)
    side = min(spec.width_mm, spec.height_mm)
    modules = max(len(rows), len(rows[0]))
    module = side / (modules + 2)  # one module of quiet zone each side
    if module < spec.min_module_mm:
        raise InvalidInput(f"label {data.subject}: the DataMatrix needs {len(rows)} modules a side; "
                           f"in {side:g} mm each would be {module:.3f} mm, under the template's "
                           f"minimum {spec.min_module_mm:g} mm")
    return Matrix(spec.x_mm + module, spec.y_mm + module, module, rows, content, fields)


def layout(template: LabelTemplate, data: LabelData) -> Drawing:
    return next(layouts(template, [data]))


def layouts(template: LabelTemplate, labels: Iterable[LabelData]) -> Iterator[Drawing]:
    """Each label laid out in turn. A line that many labels share (trial, storage, sponsor)
    is fitted once and is one item on all of them, which the PDF then writes once."""
    head = template.template
    elements = {has_gs1: ([s for s in template.text if _applies(s.when, has_gs1)],
                          [b for b in template.barcode if _applies(b.when, has_gs1)])
                for has_gs1 in (True, False)}
    placed: dict[tuple[int, str], Text | None] = {}
    width, height, floor = head.width_mm, head.height_mm, head.min_font_pt
    for data in labels:
        texts, barcodes = elements[data.gs1 is not None]
        values = data.fields | {"print_mark": data.print_mark}
        items: list[Text | Bars | Matrix] = []
        for spec in texts:
            item = _text(spec, data, values, floor, placed)
            if item is not None:
                items.append(item)
        for barcode in barcodes:
            if barcode.symbol == "datamatrix":
                items.append(_matrix(barcode, data))
            else:
                items.extend(_linear(barcode, data))
        yield Drawing(width, height, data.subject, items)
