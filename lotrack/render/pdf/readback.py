"""Read back what a lotrack PDF says about itself (pypdf): keywords and printed hashes."""

from __future__ import annotations

import json
import re
from pathlib import Path

from lotrack.errors import InvalidInput
from lotrack.services.report_check import PdfClaims

PRINTED = re.compile(r"Content SHA-256 ([0-9a-f]{64})")


def read_claims(path: Path) -> PdfClaims:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(str(path))
        keywords = (reader.metadata or {}).get("/Keywords") or ""
        printed = {m for page in reader.pages for m in PRINTED.findall(page.extract_text() or "")}
    except (OSError, PdfReadError) as exc:
        raise InvalidInput(f"cannot read {path} as a PDF: {exc}") from None
    try:
        meta = json.loads(str(keywords))
        report = meta["lotrack_report"]
    except (ValueError, KeyError, TypeError):
        raise InvalidInput(f"{path} is not a report lotrack can verify (no lotrack keywords)") from None
    return PdfClaims(report=report, params=meta.get("params", {}), summary=meta.get("summary", {}),
                     sha256=meta.get("sha256", ""), tz=meta.get("tz", "UTC"), printed=printed,
                     audit_seq=meta.get("audit_seq"), generated_at=meta.get("generated_at"))
