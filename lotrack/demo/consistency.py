"""The demo's batch-to-batch consistency report of iPS-Exo, as QA would issue it: a PDF
with the control charts and the CSV data beside it."""

from __future__ import annotations

from lotrack.demo.core import SITE_TZ, Demo
from lotrack.services import auth, documents
from lotrack.services.consistency import DEFAULT_BASELINE_LOTS, consistency_record

PRODUCT = "IPSEXO"


def write_consistency(demo: Demo) -> None:
    from lotrack.render.pdf.consistency import write_consistency_csv, write_consistency_pdf

    def issue(session):
        reader = auth.find_user(session, "qa.lee")
        return (consistency_record(session, reader, PRODUCT, site_tz=SITE_TZ),
                documents.provenance(session, reader))

    record, prov = demo.read(issue)
    pdf = demo.out / f"consistency-{PRODUCT}.pdf"
    write_consistency_pdf(pdf, record, prov, SITE_TZ, {"report": "consistency", "params": {
        "product": PRODUCT, "attributes": [], "since": None,
        "baseline": DEFAULT_BASELINE_LOTS, "baseline_explicit": False}})
    written = write_consistency_csv(demo.out / f"consistency-{PRODUCT}.csv", record)
    summary = record.head["summary"]
    demo.say(f"Batch-to-batch consistency of {PRODUCT} over {summary['lots']} lots "
             f"({pdf.name}, {', '.join(p.name for p in written)}): {summary['oos']} "
             f"out-of-specification and {summary['oot']} out-of-trend flag(s); flagged lots "
             f"that reached participants: {', '.join(summary['exposed_flagged_lots']) or 'none'}.")
