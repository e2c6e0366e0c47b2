"""The shared report page: header, footer with page x of y, generation time and user,
the document's content hash, and the audit chain head at generation.

A report is built from a plain dict of its content; the content hash printed on
every page is the SHA-256 of that dict's canonical JSON, so a printed report can
later be recomputed from the database and checked.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC
from functools import lru_cache
from pathlib import Path
from typing import Any

from reportlab import rl_config
from reportlab.lib import colors
from reportlab.lib.enums import TA_LEFT
from reportlab.lib.pagesizes import A4, landscape
from reportlab.lib.styles import ParagraphStyle, StyleSheet1, getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.pdfbase.pdfdoc import (
    PDFArray,
    PDFBase85Encode,
    PDFDictionary,
    PDFName,
    PDFPage,
    PDFStream,
    PDFZCompress,
)
from reportlab.pdfbase.pdfmetrics import stringWidth
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import Flowable, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from lotrack.render.files import prepare_output
from lotrack.render.provenance import Provenance, StreamedContentHash, content_hash

# Same input, same bytes: no random document ids or creation-time noise.
rl_config.invariant = 1

MARGIN = 15 * mm


@lru_cache(maxsize=1)
def styles() -> StyleSheet1:
    sheet = getSampleStyleSheet()
    sheet.add(ParagraphStyle("Cell", parent=sheet["BodyText"], fontSize=7.5, leading=9,
                             alignment=TA_LEFT))
    sheet.add(ParagraphStyle("Small", parent=sheet["BodyText"], fontSize=8, leading=10))
    sheet.add(ParagraphStyle("Flag", parent=sheet["BodyText"], fontSize=8, leading=10,
                             textColor=colors.HexColor("#a40000")))
    return sheet


def para(text: object, style: str = "Cell") -> Paragraph:
    safe = (str(text) if text is not None else "").replace("&", "&amp;").replace(
        "<", "&lt;").replace(">", "&gt;")
    return Paragraph(safe, styles()[style])


def data_table(header: Sequence[str], rows: Sequence[Sequence[object]],
               widths: Sequence[float] | None = None,
               flagged: Sequence[int] = (), plain: bool = False) -> Table:
    """A table that splits across pages with its header repeated; flagged rows tinted.
    A cell is text, or a flowable made already (as the accountability record's are).

    `plain` (with `widths`): the body's cells are short text (lot numbers, dates, counts),
    drawn as strings in the cell style's font rather than as paragraphs, which cost a few
    kilobytes each: a table of thousands of lots held them all at once. A text too wide
    for its column is still a paragraph, which wraps."""
    cell = styles()["Cell"]
    body: list[list[object]] = [[para(h) for h in header]]
    if plain and widths is not None:
        room = [w - 6 for w in widths]  # the cell's left and right padding
        for row in rows:
            texts = ["" if c is None else str(c) for c in row]
            body.append([t if stringWidth(t, cell.fontName, cell.fontSize) <= r else para(t)
                         for t, r in zip(texts, room, strict=True)])
    else:
        body += [[c if isinstance(c, Flowable) else para(c) for c in row] for row in rows]
    table = Table(body, colWidths=widths, repeatRows=1)
    style = [
        ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#dde4ee")),
        ("GRID", (0, 0), (-1, -1), 0.25, colors.HexColor("#8899aa")),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("LEFTPADDING", (0, 0), (-1, -1), 3), ("RIGHTPADDING", (0, 0), (-1, -1), 3),
    ]
    if plain:
        style += [("FONT", (0, 1), (-1, -1), cell.fontName, cell.fontSize, cell.leading),
                  ("TEXTCOLOR", (0, 1), (-1, -1), cell.textColor)]
    style += [("BACKGROUND", (0, i + 1), (-1, i + 1), colors.HexColor("#fde2e2"))
              for i in flagged]
    table.setStyle(TableStyle(style))
    return table


ROWS_PER_TABLE = 500


def table_parts(header: Sequence[str], rows: Sequence[Sequence[object]],
                widths: Sequence[float] | None = None, flagged: Sequence[int] = (),
                plain: bool = False) -> Iterator[Table]:
    """`data_table` for thousands of rows, as tables of ROWS_PER_TABLE rows one after the
    other, each made when asked for (a StoryOnDemand section each). ReportLab lays a table
    spilling over pages out again for every page it reaches, so one table of thousands of
    rows cost time and memory growing with its square."""
    marked = set(flagged)
    for start in range(0, max(len(rows), 1), ROWS_PER_TABLE):  # no rows: the header alone
        part = rows[start:start + ROWS_PER_TABLE]
        yield data_table(header, part, widths,
                         [i for i in range(len(part)) if start + i in marked], plain)


def key_values(pairs: Sequence[tuple[str, object]], width: float) -> Table:
    body = [[para(k, "Small"), para(v, "Small")] for k, v in pairs]
    table = Table(body, colWidths=[width * 0.3, width * 0.7])
    table.setStyle(TableStyle([("VALIGN", (0, 0), (-1, -1), "TOP"),
                               ("LINEBELOW", (0, 0), (-1, -1), 0.25, colors.lightgrey)]))
    return table


class StoryOnDemand(list[Flowable]):
    """A platypus story that takes its flowables from `sections` as they are needed.

    ReportLab's doc.build consumes the story from the front (it deletes each flowable it
    handles and puts split remainders back) and asks `len(story)` before every flowable.
    Whenever fewer than two wait there, the next whole section is appended (keep-with-next
    looks ahead), so memory holds a lot or two, not the site, and what is laid out is
    released page by page."""

    def __init__(self, sections: Iterator[list[Flowable]]) -> None:
        super().__init__()
        self._sections: Iterator[list[Flowable]] | None = sections

    def __len__(self) -> int:
        while self._sections is not None and super().__len__() < 2:
            section = next(self._sections, None)
            if section is None:
                self._sections = None
            else:
                self.extend(section)
        return super().__len__()


def _numbered_canvas(title: str, provenance: Provenance, digest_of: Callable[[], str],
                     tz_name: str, meta: dict[str, Any] | None):
    """A canvas class that draws 'page x of y' once the page count is known, and the content
    hash, final by then even for a document hashed as its story is laid out."""

    class NumberedCanvas(Canvas):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._pages: list[dict[str, Any]] = []

        def showPage(self) -> None:
            # Each page waits for the page count as one compressed string, not as the
            # thousands of small strings a table page is drawn with: held like that, the
            # pages of a site's accountability record took hundreds of megabytes.
            state = dict(self.__dict__)
            state["_code"] = zlib.compress("\n".join(self._code).encode()) if self._code else b""
            self._pages.append(state)
            self._startPage()

        def save(self) -> None:
            digest = digest_of()
            self.setSubject(f"content sha256 {digest}")
            if meta:
                self.setKeywords(report_keywords(meta, digest, tz_name, provenance))
            total = len(self._pages)
            waiting, self._pages = self._pages[::-1], []
            while waiting:  # each page is let go once written
                state = waiting.pop()
                code = state.pop("_code")
                self.__dict__.update(state)
                self._code = [zlib.decompress(code).decode()] if code else []
                self._footer(total, digest)
                super().showPage()
                _compress_page_now(self._doc.Pages.pages[-1])
            super().save()

        def _footer(self, total: int, digest: str) -> None:
            width, _ = self._pagesize
            at = provenance.generated_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
            self.setFont("Helvetica", 7)
            self.setFillColor(colors.black)
            self.drawString(MARGIN, 10 * mm, f"{title}  |  generated {at} by "
                                             f"{provenance.generated_by}  |  site time zone {tz_name}")
            self.drawString(MARGIN, 6.5 * mm, f"Content SHA-256 {digest}  |  audit chain head "
                                              f"#{provenance.audit_seq} {provenance.audit_hash[:16]}")
            self.drawRightString(width - MARGIN, 10 * mm, f"Page {self._pageNumber} of {total}")

    return NumberedCanvas


def _compress_page_now(page: PDFPage) -> None:
    """Encode a page's stream as ReportLab would when the file is written (same filters, same
    bytes), so that a long document does not hold every page uncompressed until then."""
    if not page.compression or not page.stream:
        return
    filters = [PDFBase85Encode, PDFZCompress] if rl_config.useA85 else [PDFZCompress]
    content = page.stream
    for encoding in reversed(filters):
        content = encoding.encode(content)
    # A stream whose Filter is already set is written as it is (PDFStream.format).
    stream = PDFStream(PDFDictionary({"Filter": PDFArray([PDFName(f.pdfname) for f in filters])}),
                       content)
    stream.__Comment__ = "page stream"
    page.Contents, page.stream = stream, None


def build_pdf(path: Path, title: str, subtitle: str, story: list[Flowable],
              provenance: Provenance, content: dict[str, Any] | StreamedContentHash,
              tz_name: str, wide: bool = False, meta: dict[str, Any] | None = None,
              footer_title: str | None = None) -> str:
    """Write the document; returns the content hash printed on every page.

    `meta` (what report, with which parameters) goes into the PDF's keywords with the
    hash, so that `lotrack report verify` can recompute the content later. `content` may
    be a StreamedContentHash that the story feeds as it is laid out (a document too large
    to hold): the hash is final once the last page is, which is when it is written."""
    if isinstance(content, StreamedContentHash):
        digest_of = content.hexdigest
    else:
        digest = content_hash(content)

        def digest_of() -> str:
            return digest
    pagesize = landscape(A4) if wide else A4
    prepare_output(path)
    doc = SimpleDocTemplate(str(path), pagesize=pagesize, leftMargin=MARGIN,
                            rightMargin=MARGIN, topMargin=MARGIN, bottomMargin=18 * mm,
                            title=title, author=provenance.generated_by, creator="lotrack")
    head = [Paragraph(title, styles()["Title"]), Paragraph(subtitle, styles()["Small"]),
            Spacer(1, 4 * mm)]
    # The story is extended in place, so that a story filled on demand (the accountability
    # record's) stays one; doc.build consumes it either way.
    story[0:0] = head
    doc.build(story, canvasmaker=_numbered_canvas(footer_title or title, provenance,
                                                  digest_of, tz_name, meta))
    return digest_of()


def report_keywords(meta: dict[str, Any], digest: str, tz_name: str,
                    provenance: Provenance) -> str:
    return json.dumps({"lotrack_report": meta["report"], "params": meta.get("params", {}),
                       "summary": meta.get("summary", {}), "sha256": digest, "tz": tz_name,
                       "audit_seq": provenance.audit_seq,
                       "generated_at": provenance.generated_at.isoformat()},
                      sort_keys=True, separators=(",", ":"))


def usable_width(wide: bool = False) -> float:
    width = (landscape(A4) if wide else A4)[0]
    return width - 2 * MARGIN
