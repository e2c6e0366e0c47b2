"""The label PDF writer: symbols painted exactly, text as text, no global state left behind."""

from pathlib import Path

import pypdfium2 as pdfium
import zxingcpp
from pypdf import PdfReader
from reportlab import rl_config

from lotrack.render.labels.layout import LabelData, layout
from lotrack.render.labels.pdf import write_pdf
from lotrack.render.labels.symbols import runs
from lotrack.services.labels import load_template

FIELDS = {"product_code": "EXO", "fill_volume": "1 mL", "route": "IV", "lot": "L-26",
          "expiry": "2027-01-31", "serial": "V00000127", "trial_code": "EXO-01",
          "ctu": "For clinical trial use only", "storage": "Store at or below -70 C",
          "sponsor_short": "Sponsor"}


def _label(serial: str, gtin: str | None = "09506000134352", number: int = 2) -> LabelData:
    gs1 = [("01", gtin), ("10", "L-26"), ("17", "270131"), ("21", serial)] if gtin else None
    return LabelData(serial, {**FIELDS, "serial": serial}, gs1, print_number=number)


def test_runs_are_the_dark_stretches_of_a_row():
    assert runs("0110111001") == [(1, 2), (4, 3), (9, 1)]
    assert runs("") == [] and runs("000") == [] and runs("1") == [(0, 1)]


def test_a_sheet_decodes_label_by_label_and_keeps_its_text(tmp_path: Path):
    template = load_template(None, "vial")
    labels = [_label(f"V{n:08d}") for n in range(1, 6)] + [_label("V00000099", gtin=None, number=1)]
    out = tmp_path / "sheet.pdf"
    a85 = rl_config.useA85
    assert write_pdf(out, [layout(template, label) for label in labels], template,
                     template.sheet_named("a4"), "test") == 1
    assert rl_config.useA85 == a85  # the writer's binary streams are its own affair
    text = PdfReader(str(out)).pages[0].extract_text()
    assert text.count("REPRINT 2") == 5 and "SN V00000003" in text
    image = pdfium.PdfDocument(str(out))[0].render(scale=8).to_pil()
    found = {r.text for r in zxingcpp.read_barcodes(image, text_mode=zxingcpp.TextMode.HRI)}
    for n in range(1, 6):
        assert f"(01)09506000134352(10)L-26(17)270131(21)V{n:08d}" in found
    assert "V00000099" in found  # the Code 128 of a product without a GTIN
