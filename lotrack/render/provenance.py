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
    return hashlib.sha256(_canonical(content).encode()).hexdigest()


class StreamedContentHash:
    """`content_hash` of a document whose one long list (a site's lots, say) is produced item
    by item and never held whole: the same canonical JSON, fed to SHA-256 in pieces.

    `head` is the content without that list; `add` each item in order, then `hexdigest()`.
    The digest equals content_hash({**head, list_key: [the items]}), so `report verify`,
    which recomputes the content as one dict, agrees with it."""

    def __init__(self, head: dict[str, Any], list_key: str) -> None:
        # Canonical JSON of the head with a unique placeholder where the list goes: the
        # text either side of it frames the items, whatever the keys sort like.
        marker = f"\x00{list_key}-items\x00"
        before, after = _canonical({**head, list_key: marker}).split(_canonical(marker))
        self._sha = hashlib.sha256(f"{before}[".encode())
        self._after = f"]{after}"
        self._count = 0
        self._digest: str | None = None

    def add(self, item: object) -> None:
        if self._digest is not None:
            raise RuntimeError("the content hash is already final")
        self._sha.update(f"{',' if self._count else ''}{_canonical(item)}".encode())
        self._count += 1

    def hexdigest(self) -> str:
        if self._digest is None:
            self._sha.update(self._after.encode())
            self._digest = self._sha.hexdigest()
        return self._digest


def _canonical(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=str)
