"""`report verify`: recompute a report's content from the database and compare hashes.

A PDF lotrack writes carries, in its keywords, which report it is, with which
parameters and site time zone, and the SHA-256 of its content; the same hash is printed
in the footer of every page. Recomputing the content now and hashing it tells whether
the printed report still says what the database says.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from lotrack import audit
from lotrack.config import parse_timezone
from lotrack.errors import InvalidInput
from lotrack.models import User
from lotrack.render.provenance import StreamedContentHash, content_hash


@dataclass(frozen=True)
class Recomputed:
    """A report's content as the database gives it now: its hash and its counts."""

    sha256: str
    summary: dict[str, Any]


def _custody(session: Session, actor: User, params: dict[str, Any], tz: ZoneInfo) -> dict[str, Any]:
    from lotrack.services.custody import custody

    at = params.get("_generated_at")
    return custody(session, actor, serial=params.get("vial"), lot_number=params.get("lot"),
                   subject=params.get("participant"), tz=tz, as_of=params.get("_audit_seq"),
                   at=datetime.fromisoformat(at) if at else None)


def _coa(session: Session, actor: User, params: dict[str, Any], tz: ZoneInfo) -> dict[str, Any]:
    from lotrack.services.documents import certificate_of_analysis

    return certificate_of_analysis(session, actor, params["lot"], params.get("product"), tz)


def _accountability(session: Session, actor: User, params: dict[str, Any],
                    tz: ZoneInfo) -> Recomputed:
    """Hashed lot by lot as the record is read, the way the PDF was written: a site's
    record held whole took over 500 MB at sponsor scale."""
    from lotrack.services.accountability import accountability_record

    record = accountability_record(session, actor, params.get("lot"), params.get("product"))
    digest = StreamedContentHash(record.head(), "lots")
    lines = 0
    for lot in record.lots:
        digest.add(lot)
        lines += len(lot["lines"])
    return Recomputed(digest.hexdigest(), {"lines": lines})


def _manifest(session: Session, actor: User, params: dict[str, Any],
              tz: ZoneInfo) -> dict[str, Any]:
    from lotrack.services.shipments import manifest

    return manifest(session, actor, params["shipment"], tz)


def _safety(session: Session, actor: User, params: dict[str, Any], tz: ZoneInfo) -> dict[str, Any]:
    from lotrack.services.safety_report import lot_safety_summary

    return lot_safety_summary(session, actor, tz)


def _consistency(session: Session, actor: User, params: dict[str, Any],
                 tz: ZoneInfo) -> Recomputed:
    from datetime import date

    from lotrack.services.consistency import consistency_record

    since = params.get("since")
    record = consistency_record(session, actor, params["product"],
                                attributes=params.get("attributes") or (),
                                since=date.fromisoformat(since) if since else None,
                                baseline=params.get("baseline"),
                                baseline_explicit=bool(params.get("baseline_explicit")),
                                site_tz=tz)
    return Recomputed(record.digest(), summary_of("consistency", record.head))


RECOMPUTE: dict[str, Callable[[Session, User, dict[str, Any], ZoneInfo],
                               dict[str, Any] | Recomputed]] = {
    "custody": _custody, "coa": _coa, "accountability": _accountability, "manifest": _manifest,
    "safety": _safety, "consistency": _consistency,
}


AS_OF_REPORTS = ("custody",)  # derived from the audit trail, so computable as of a point in it


@dataclass
class PdfClaims:
    """What a PDF says about itself: its keywords and the hashes printed on its pages."""

    report: str
    params: dict[str, Any]
    summary: dict[str, Any]
    sha256: str
    tz: str
    printed: set[str] = field(default_factory=set)
    audit_seq: int | None = None  # the audit chain head when the report was generated
    generated_at: str | None = None
    pages_without_hash: list[int] = field(default_factory=list)


@dataclass
class Verdict:
    report: str
    params: dict[str, Any]
    printed_sha256: str
    current_sha256: str
    problems: list[str]
    summary_then: dict[str, Any]
    summary_now: dict[str, Any]

    @property
    def matches(self) -> bool:
        return not self.problems


def summary_of(report: str, content: dict[str, Any]) -> dict[str, Any]:
    """Counts printed in the keywords, so a mismatch can say what changed."""
    if report == "custody":
        return {"steps": len(content["steps"]), "gaps": len(content["gaps"]),
                "signatures": len(content["signatures"])}
    if report == "coa":
        return {"results": len(content["results"]), "signatures": len(content["signatures"])}
    if report == "manifest":
        return {"vials": content["count"]}
    return {"lots": len(content.get("lots", []))}


def verify(session: Session, actor: User, claims: PdfClaims) -> Verdict:
    recompute = RECOMPUTE.get(claims.report)
    if recompute is None:
        raise InvalidInput(f"lotrack cannot verify a {claims.report!r} report")
    params = dict(claims.params)
    if claims.report in AS_OF_REPORTS and claims.audit_seq is not None:
        # Recomputed as of the report's audit head: later activity does not make it wrong.
        params |= {"_audit_seq": claims.audit_seq, "_generated_at": claims.generated_at}
    content = recompute(session, actor, params, parse_timezone(claims.tz))
    now = content if isinstance(content, Recomputed) else Recomputed(
        content_hash(content), summary_of(claims.report, content))
    problems = []
    if claims.printed != {claims.sha256}:
        problems.append("the hash printed on the pages is not the one in the PDF's keywords: "
                        "the file was altered after lotrack wrote it")
    if claims.pages_without_hash:
        problems.append(f"{_pages(claims.pages_without_hash)} no content hash: lotrack prints it "
                        "on every page, so the file was altered after lotrack wrote it")
    if now.sha256 != claims.sha256:
        problems.append("the database no longer gives the content this report shows")
    # The content is derived from the audit trail: say whether the trail itself holds.
    chain = audit.verify(session)
    if not chain.ok:
        problems.append(f"the audit trail fails verification ({len(chain.problems)} problem(s), "
                        f"first: {chain.problems[0]})")
    return Verdict(claims.report, claims.params, claims.sha256, now.sha256, problems,
                   claims.summary, now.summary)


def _pages(numbers: list[int]) -> str:
    shown = ", ".join(str(n) for n in numbers[:10])
    more = f" and {len(numbers) - 10} more" if len(numbers) > 10 else ""
    return f"page {shown} carries" if len(numbers) == 1 else f"pages {shown}{more} carry"
