"""Where a document came from, and the hash of its content (no ReportLab here: services use it)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class Provenance:
    """Who generated a document, when, and the audit chain head at that moment."""

    generated_by: str
    generated_at: datetime
    audit_seq: int
    audit_hash: str


def content_hash(content: dict[str, Any]) -> str:
    """SHA-256 of the document's content as canonical JSON: what `report verify` recomputes."""
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=str)
    return hashlib.sha256(text.encode()).hexdigest()
