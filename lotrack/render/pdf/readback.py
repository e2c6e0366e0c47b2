"""Read back what a lotrack PDF says about itself (pypdf): keywords and printed hashes."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from lotrack.errors import InvalidInput
from lotrack.services.report_check import PdfClaims

PRINTED = re.compile(r"Content SHA-256 ([0-9a-f]{64})")
# The footer as ReportLab writes it in a page's content stream: one literal string.
DRAWN = re.compile(rb"\(Content SHA-256 ([0-9a-f]{64})")


def read_claims(path: Path) -> PdfClaims:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError, PdfStreamError

    try:
        reader = PdfReader(str(path))
        keywords = (reader.metadata or {}).get("/Keywords") or ""
        printed: set[str] = set()
        unprinted: list[int] = []
        for number, page in enumerate(reader.pages, start=1):
            on_page = _printed_on(page)
            printed |= on_page
            if not on_page:
                unprinted.append(number)
    except (OSError, PdfReadError, PdfStreamError, ValueError) as exc:
        raise InvalidInput(f"cannot read {path} as a PDF: {exc}") from None
    try:
        meta = json.loads(str(keywords))
        report = meta["lotrack_report"]
    except (ValueError, KeyError, TypeError):
        raise InvalidInput(f"{path} is not a report lotrack can verify (no lotrack keywords)") from None
    return PdfClaims(report=report, params=meta.get("params", {}), summary=meta.get("summary", {}),
                     sha256=meta.get("sha256", ""), tz=meta.get("tz", "UTC"), printed=printed,
                     audit_seq=meta.get("audit_seq"), generated_at=meta.get("generated_at"),
                     pages_without_hash=unprinted)


def _printed_on(page: Any) -> set[str]:
    """The content hashes one page prints. Searched for in the page's decoded content
    streams first: extracting a page's text costs about a hundred times more, which for a
    site's accountability record of thousands of pages was most of `report verify`. A page
    whose streams do not hold the footer as lotrack draws it (the file rewritten by another
    tool, say) has its text extracted instead."""
    from pypdf.filters import decode_stream_data
    from pypdf.generic import ArrayObject

    contents = page.get("/Contents")
    found: set[str] = set()
    if contents is not None:
        contents = contents.get_object()
        for part in contents if isinstance(contents, ArrayObject) else [contents]:
            stream = part.get_object()
            try:
                # decode_stream_data, not get_data(): it keeps no decoded copy on the
                # object, so the pages read do not pile up in memory.
                data = decode_stream_data(stream) if "/Filter" in stream else stream.get_data()
            except NotImplementedError:  # a filter pypdf cannot decode: read the text
                break
            found.update(m.decode() for m in DRAWN.findall(data))
    return found or set(PRINTED.findall(page.extract_text() or ""))
