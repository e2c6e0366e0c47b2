"""Custody records the demo writes: one lot, one vial, one participant (two cycles)."""

from __future__ import annotations

from lotrack.demo.core import SITE_TZ, Demo
from lotrack.services import auth, custody, documents
from lotrack.services.report_check import summary_of

SUBJECTS = {"vial": "V00000013", "lot": "EXO-2601", "participant": "IUA-003"}


def write_custody_reports(demo: Demo) -> None:
    from lotrack.render.pdf.custody import write_custody

    def build(session):
        reader = auth.find_user(session, "monitor.sun")
        prov = documents.provenance(session, reader)
        return prov, {kind: custody.custody(
            session, reader, serial=value if kind == "vial" else None,
            lot_number=value if kind == "lot" else None,
            subject=value if kind == "participant" else None, tz=SITE_TZ)
            for kind, value in SUBJECTS.items()}

    prov, records = demo.read(build)
    for kind, content in records.items():
        value = SUBJECTS[kind]
        meta = {"report": "custody", "params": {kind: value}, "summary": summary_of("custody", content)}
        write_custody(demo.out / "custody" / f"{kind}-{value}.pdf", content, prov, SITE_TZ, meta)
    demo.say(f"Wrote custody records of {', '.join(f'{k} {v}' for k, v in SUBJECTS.items())} "
             "(custody/); check one with `lotrack report verify custody/vial-V00000013.pdf`.")
