"""The floor for the label benchmark: a bare ReportLab script drawing the same barcodes.

No templates, no validation, no audit: the GS1 DataMatrix of each vial of a lot painted as
rectangles on an A4 sheet of 4 x 17 labels, which is the least any label PDF must do.
Usage: python bench/floor_labels.py LOT OUT.pdf (LOTRACK_DB names the database).
"""

from __future__ import annotations

import os
import sys

import zxingcpp
from reportlab.lib.units import mm
from reportlab.pdfgen.canvas import Canvas
from sqlalchemy import create_engine, text


def main(lot: str, out: str) -> None:
    engine = create_engine(os.environ["LOTRACK_DB"])
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT v.serial, l.lot_number, l.expiry_on, p.gtin FROM vials v "
            "JOIN lots l ON l.id = v.lot_id JOIN products p ON p.id = l.product_id "
            "WHERE l.lot_number = :lot ORDER BY v.number"), {"lot": lot}).all()
    canvas = Canvas(out, pagesize=(210 * mm, 297 * mm))
    for index, (serial, number, expiry, gtin) in enumerate(rows):
        slot = index % 68
        if slot == 0 and index:
            canvas.showPage()
        x, y = (10 + (slot % 4) * 48) * mm, (297 - 12 - (slot // 4 + 1) * 16) * mm
        content = f"(01){gtin}(10){number}(17){str(expiry).replace('-', '')[2:]}(21){serial}"
        symbol = zxingcpp.create_barcode(content, zxingcpp.BarcodeFormat.DataMatrix, gs1=True,
                                         force_square=True)
        image = memoryview(symbol.to_image(scale=1, add_quiet_zones=False))
        size, pixels = image.shape[0], image.tobytes()
        module = 10 * mm / (size + 2)
        path = canvas.beginPath()
        for r in range(size):
            for c in range(size):
                if pixels[r * size + c] < 128:
                    path.rect(x + (c + 1) * module, y + (size - r) * module, module, module)
        canvas.drawPath(path, stroke=0, fill=1)
    canvas.save()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
