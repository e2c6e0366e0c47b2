"""Tables in lotrack's PDF documents: a `plain` table draws short cells as strings and
wraps a cell too wide for its column, so no text runs over into the next column."""

from pypdf import PdfReader
from reportlab.platypus import Paragraph, SimpleDocTemplate

from lotrack.render.pdf.base import data_table


def test_a_plain_table_wraps_only_what_does_not_fit(tmp_path):
    table = data_table(["Lot", "Doses"], [["W" * 20, 1], ["EXO-2601", None]],
                       widths=[60, 40], plain=True)
    wide, fits = table._cellvalues[1], table._cellvalues[2]
    assert isinstance(wide[0], Paragraph) and wide[1] == "1"
    assert fits == ["EXO-2601", ""]
    out = tmp_path / "table.pdf"
    SimpleDocTemplate(str(out)).build([table])
    text = PdfReader(out).pages[0].extract_text()
    assert "".join(text.split()).count("W") == 20  # wrapped over lines, every letter kept
    assert "EXO-2601" in text
