"""The demo's barcode scanner: it reads the vial labels the demo printed, as a pharmacist's
scanner would, so that receipt is confirmed from the printed labels themselves.

Each page of a label sheet is rasterised (pypdfium2), each label cut out at its place on
the sheet and decoded (zxing-cpp). What comes out is what a keyboard-wedge scanner types:
the symbology identifier and the raw element string with its ASCII 29 separators.
"""

from __future__ import annotations

from pathlib import Path

from lotrack.schemas.labels import PAGES_MM
from lotrack.services.labels import load_template

SCALE = 6  # pixels per PDF point: enough for the 0.25 mm modules of the cryovial DataMatrix


def read_label_sheet(path: Path, kind: str = "vial", sheet: str = "a4") -> list[str]:
    """Every label's scan on a sheet, in sheet order (rows, then columns)."""
    import pypdfium2 as pdfium
    import zxingcpp
    from PIL import Image

    template = load_template(None, kind)
    spec = template.sheet_named(sheet)
    assert spec is not None, f"the {kind} template has no sheet {sheet!r}"
    label = template.template
    px = SCALE * 72 / 25.4  # pixels per mm
    scans: list[str] = []
    for page in pdfium.PdfDocument(str(path)):
        image = page.render(scale=SCALE).to_pil()
        assert round(image.width / px) == round(PAGES_MM[spec.page][0])
        for row in range(spec.rows):
            for column in range(spec.columns):
                x = spec.left_mm + column * spec.column_pitch_mm
                y = spec.top_mm + row * spec.row_pitch_mm
                cut = image.crop((round(x * px), round(y * px), round((x + label.width_mm) * px),
                                  round((y + label.height_mm) * px)))
                if cut.convert("L").getextrema()[0] >= 128:
                    continue  # an empty place on the sheet
                padded = Image.new("RGB", (cut.width + 60, cut.height + 60), "white")
                padded.paste(cut, (30, 30))
                found = zxingcpp.read_barcodes(padded, text_mode=zxingcpp.TextMode.Plain)
                # A label carries one symbol per payload; the first is what the scanner reads.
                if found:
                    scans.append(found[0].symbology_identifier + found[0].text)
    return scans
