"""Labels as ZPL II for Zebra thermal printers: the printer draws the symbols itself.

Positions come from the same layout as the PDF; the printer's resolution (dots per mm)
is a setting. Text goes through ^FH so that ^ and ~ in data cannot end a field.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from lotrack import gs1
from lotrack.render.labels.layout import Bars, Drawing, Matrix, Text
from lotrack.schemas.labels import PT_TO_MM


def _hex_escape(text: str) -> str:
    return "".join(f"_{ord(ch):02X}" if ch in "^~_" or ord(ch) > 126 else ch for ch in text)


def _gs1_128_data(fields: list[tuple[str, str]]) -> str:
    # >: starts subset B, >8 is FNC1: one before the data and one after each open field.
    return ">:>8" + gs1.element_string(fields, separator=">8")


def _datamatrix_data(item: Matrix) -> str:
    # With escape character _, "_1" is FNC1: first for GS1, then after each open field.
    return "_1" + gs1.element_string(item.gs1, separator="_1") if item.gs1 else item.content


def label(drawing: Drawing, dpmm: int = 12, copies: int = 1) -> str:
    def dots(value: float) -> int:
        return max(1, round(value * dpmm))

    out = ["^XA", "^CI28", f"^PW{dots(drawing.width)}", f"^LL{dots(drawing.height)}", "^LH0,0"]
    for item in drawing.items:
        if isinstance(item, Text):
            height = dots(item.size * PT_TO_MM)
            top = dots(item.baseline - item.size * PT_TO_MM * 0.95)
            justify = {"left": "L", "center": "C", "right": "R"}[item.align]
            out.append(f"^FO{dots(item.x)},{top}^A0N,{height},{height}"
                       f"^FB{dots(item.width)},1,0,{justify}^FH_^FD{_hex_escape(item.text)}^FS")
        elif isinstance(item, Bars):
            data = _gs1_128_data(item.gs1) if item.gs1 else ">:" + item.content
            out.append(f"^FO{dots(item.x)},{dots(item.y)}^BY{max(1, round(item.module * dpmm))}"
                       f"^BCN,{dots(item.height)},N,N,N^FD{data}^FS")
        elif isinstance(item, Matrix):
            out.append(f"^FO{dots(item.x)},{dots(item.y)}^BXN,{max(1, round(item.module * dpmm))},"
                       f"200,,,,_^FD{_datamatrix_data(item)}^FS")
    out += [f"^PQ{copies}", "^XZ"]
    return "\n".join(out)


def write_zpl(path: Path, drawings: Iterable[Drawing], dpmm: int = 12) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for drawing in drawings:
            handle.write(label(drawing, dpmm) + "\n")
