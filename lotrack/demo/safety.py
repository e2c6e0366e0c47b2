"""The demo's safety part: adverse events recorded by the investigators at the visits that
followed the perfusions, a correction with its reason, then the lot safety summary and
the SDTM files written into the demo folder."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import select

from lotrack.demo.core import SITE_TZ, Demo
from lotrack.models import Dose, Participant
from lotrack.schemas.safety import AdverseEventChange, AdverseEventIn
from lotrack.services import adverse_events, auth, documents
from lotrack.services.safety_report import lot_safety_summary
from lotrack.services.sdtm import sdtm_datasets


@dataclass(frozen=True)
class DemoEvent:
    subject: str
    perfusion: int  # onset after this perfusion of cycle 1
    onset_days: int  # days after that perfusion (site calendar)
    term: str
    grade: int
    relatedness: str
    resolved_days: int | None  # days after onset; None: still ongoing when recorded
    action: str | None = None
    serious: bool = False
    outcome: str | None = None
    investigator: str = "inv.liu"


# Mild local events after perfusions (what a first-in-human intrauterine product is
# watched for), one event on placebo, one unrelated serious event, one verbatim term.
EVENTS = (
    DemoEvent("IUA-001", 1, 0, "Pelvic pain", 1, "possible", 1, "dose not changed"),
    DemoEvent("IUA-002", 2, 0, "Vaginal bleeding", 1, "probable", 2, "dose not changed"),
    DemoEvent("IUA-003", 3, 1, "Uterine pain", 1, "possible", 3,
              "dose not changed; oral ibuprofen"),
    DemoEvent("IUA-006", 1, 0, "Fever", 1, "unlikely", 1, "dose not changed",
              investigator="inv.zhou"),
    DemoEvent("IUA-008", 2, 1, "Pelvic pain", 1, "possible", 2, "dose not changed"),
    DemoEvent("IUA-010", 3, 7, "Appendicitis", 3, "unrelated", 6,
              "not applicable; laparoscopic appendectomy", serious=True),
    DemoEvent("IUA-011", 1, 0, "Lower abdominal cramping after perfusion", 1, "possible", 1,
              "dose not changed", investigator="inv.zhou"),
    DemoEvent("IUA-014", 2, 2, "Vaginal discharge", 1, "unlikely", None, "dose not changed",
              outcome="recovering"),
)
# The uterine pain is re-graded once the investigator learns an analgesic was needed.
REGRADE = ("IUA-003", 2, "re-graded on review of the diary: oral analgesic was needed")


def _perfusion_times(demo: Demo) -> dict[tuple[str, int], datetime]:
    """(subject, perfusion) -> administration time, cycle 1 only (the first dose given)."""
    def read(session):
        rows = session.execute(
            select(Participant.subject_id, Dose.perfusion, Dose.administered_at)
            .join(Participant, Participant.id == Dose.participant_id)
            .where(Dose.status == "administered").order_by(Dose.administered_at)).all()
        found: dict[tuple[str, int], datetime] = {}
        for subject, perfusion, at in rows:
            found.setdefault((subject, perfusion), at)
        return found

    return demo.read(read)


def _visit_after(day: date, hour: int = 11) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=SITE_TZ)


def record_adverse_events(demo: Demo) -> None:
    given = _perfusion_times(demo)
    codes: dict[str, str] = {}
    for event in EVENTS:
        perfused = given[(event.subject, event.perfusion)].astimezone(SITE_TZ)
        onset = perfused.date() + timedelta(days=event.onset_days)
        resolved = onset + timedelta(days=event.resolved_days) \
            if event.resolved_days is not None else None
        # Recorded at the visit after the event resolved, or the day after onset.
        recorded = _visit_after((resolved or onset) + timedelta(days=1))
        data = AdverseEventIn(term=event.term, grade=event.grade, onset=onset,
                              serious=event.serious, relatedness=event.relatedness,
                              outcome=event.outcome, resolved=resolved, action=event.action)
        ae = demo.act(event.investigator, recorded, lambda s, a, e=event, d=data:
                      adverse_events.record_adverse_event(s, a, e.subject, d, SITE_TZ))
        codes[event.subject] = ae.ae_code
    subject, grade, reason = REGRADE
    regraded_at = _visit_after(given[(subject, 3)].astimezone(SITE_TZ).date()
                               + timedelta(days=8), 15)
    demo.act("inv.liu", regraded_at, lambda s, a: adverse_events.update_adverse_event(
        s, a, codes[subject], AdverseEventChange(reason=reason, grade=grade), SITE_TZ))
    demo.say(f"Recorded {len(EVENTS)} adverse events (CTCAE v5.0): mild events after "
             "perfusions, one unrelated SAE (appendicitis, grade 3), one verbatim term flagged "
             f"for coding; {codes[subject]} re-graded with its reason in the audit trail.")


def write_safety_outputs(demo: Demo) -> None:
    from lotrack.render.pdf.safety import write_safety_pdf
    from lotrack.render.sdtm import write_datasets

    def issue(session):
        reader = auth.find_user(session, "monitor.sun")
        return (lot_safety_summary(session, reader, SITE_TZ),
                documents.provenance(session, reader), sdtm_datasets(session, reader, SITE_TZ))

    summary, prov, datasets = demo.read(issue)
    write_safety_pdf(demo.out / "safety.pdf", summary, prov, SITE_TZ,
                     {"report": "safety", "params": {}})
    write_datasets(demo.out / "sdtm", datasets)
    flagged = ", ".join(summary["flagged"]) or "none"
    demo.say(f"Wrote the lot safety summary (safety.pdf; lots flagged: {flagged}) and SDTM "
             f"files (sdtm/: {', '.join(f'{d.name} {len(d.rows)}' for d in datasets)}).")
