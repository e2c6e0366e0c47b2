"""Reading labels back as a user's scanner and eyes would: rasterise, decode, extract text."""

from __future__ import annotations

from pathlib import Path

import biip
import pypdfium2 as pdfium
import zxingcpp
from PIL import Image
from pypdf import PdfReader


def decode_image(image: Image.Image) -> list[tuple[str, str]]:
    found = zxingcpp.read_barcodes(image, text_mode=zxingcpp.TextMode.Plain)
    return [(r.symbology_identifier, r.text) for r in found]


def decode_pdf(path: Path, scale: float = 8) -> list[list[tuple[str, str]]]:
    """Every barcode a decoder finds on each page, as (symbology identifier, raw text)."""
    document = pdfium.PdfDocument(str(path))
    return [decode_image(page.render(scale=scale).to_pil()) for page in document]


def gs1_fields(symbology: str, raw: str) -> dict[str, str]:
    """Parse with biip, a GS1 library independent of ours."""
    message = biip.parse(symbology + raw).gs1_message
    assert message is not None, raw
    return {e.ai.ai: e.value for e in message.element_strings}


def pdf_text(path: Path) -> list[str]:
    return [page.extract_text() for page in PdfReader(str(path)).pages]


def decode_labels(path: Path, kind: str, sheet: str | None, scale: float = 8) -> list[list[tuple[str, str]]]:
    """Each label of a sheet cut out and decoded on its own, as a scanner reads one label."""
    from lotrack.schemas.labels import PAGES_MM
    from lotrack.services.labels import load_template

    template = load_template(None, kind)
    spec = template.sheet_named(sheet)
    px = scale * 72 / 25.4  # pixels per mm
    head = template.template
    out = []
    for page in pdfium.PdfDocument(str(path)):
        image = page.render(scale=scale).to_pil()
        if spec is None:
            out.append(decode_image(image))
            continue
        assert (round(image.width / px), round(image.height / px)) == tuple(
            round(v) for v in PAGES_MM[spec.page])
        for row in range(spec.rows):
            for column in range(spec.columns):
                x = spec.left_mm + column * spec.column_pitch_mm
                y = spec.top_mm + row * spec.row_pitch_mm
                label = image.crop((round(x * px), round(y * px), round((x + head.width_mm) * px),
                                    round((y + head.height_mm) * px)))
                if label.convert("L").getextrema()[0] < 128:  # anything printed in this slot
                    padded = Image.new("RGB", (label.width + 80, label.height + 80), "white")
                    padded.paste(label, (40, 40))
                    out.append(decode_image(padded))
    return out

