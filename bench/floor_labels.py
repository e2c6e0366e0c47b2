"""The floor for the label benchmark: a bare ReportLab script drawing the same barcodes.

No templates, text, validation or audit: the GS1 DataMatrix of each vial of a lot on an
A4 sheet of 4 x 17 cryovial labels (the cryovial template's slots, symbol box and quiet
zone), drawn the efficient way a developer would with ReportLab alone: each row's runs of
dark modules as one rectangle, in module units under one transformation per symbol, one
fill per symbol. lotrack draws its symbols the same way, so the ratio of the two is what
lotrack adds: templates, text fitting, database reads and the audited print records.
Usage: python bench/floor_labels.py LOT OUT.pdf (LOTRACK_DB names the database).
"""

from __future__ import annotations

import os
import re
import sys

import zxingcpp
from reportlab import rl_config
from reportlab.lib.units import mm
from reportlab.pdfgen.canvas import Canvas
from sqlalchemy import create_engine, text

PAGE_W, PAGE_H = 210, 297  # mm, A4
COLUMNS, ROWS, LEFT, TOP, PITCH_X, PITCH_Y = 4, 17, 10, 12, 48, 16
SYMBOL_AT, SYMBOL_BOX = 0.6, 10.2  # mm from the label's top-left corner; the symbol's square
DARK = bytes(ord("1") if value < 128 else ord("0") for value in range(256))
RUN = re.compile(b"1+")


def symbol_code(content: str, x: float, top: float) -> str:
    """PDF operators painting one symbol whose box has its top-left corner at (x, top) pt."""
    symbol = zxingcpp.create_barcode(content, zxingcpp.BarcodeFormat.DataMatrix, gs1=True,
                                     force_square=True)
    image = memoryview(symbol.to_image(scale=1, add_quiet_zones=False))
    size = image.shape[0]
    modules = image.tobytes().translate(DARK)
    module = SYMBOL_BOX * mm / (size + 2)  # one module of quiet zone each side
    boxes = " ".join(f"{m.start()} {r} {m.end() - m.start()} 1 re" for r in range(size)
                     for m in RUN.finditer(modules[r * size:(r + 1) * size]))
    # Module units with y running down the symbol, so row r is y = r.
    return f"q {module:.3f} 0 0 -{module:.3f} {x + module:.3f} {top - module:.3f} cm {boxes} f Q"


def main(lot: str, out: str) -> None:
    engine = create_engine(os.environ["LOTRACK_DB"])
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT v.serial, l.lot_number, l.expiry_on, p.gtin FROM vials v "
            "JOIN lots l ON l.id = v.lot_id JOIN products p ON p.id = l.product_id "
            "WHERE l.lot_number = :lot ORDER BY v.number"), {"lot": lot}).all()
    rl_config.useA85 = 0  # compressed streams as binary, as lotrack writes them
    canvas = Canvas(out, pagesize=(PAGE_W * mm, PAGE_H * mm), pageCompression=1)
    per_page = COLUMNS * ROWS
    for index, (serial, number, expiry, gtin) in enumerate(rows):
        slot = index % per_page
        if slot == 0 and index:
            canvas.showPage()
        left = LEFT + (slot % COLUMNS) * PITCH_X
        top = TOP + (slot // COLUMNS) * PITCH_Y
        content = f"(01){gtin}(10){number}(17){str(expiry).replace('-', '')[2:]}(21){serial}"
        canvas.addLiteral(symbol_code(content, (left + SYMBOL_AT) * mm,
                                      (PAGE_H - top - SYMBOL_AT) * mm))
    canvas.save()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
