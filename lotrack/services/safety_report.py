"""The lot safety summary: for each lot given to participants, who was exposed, the
adverse events that followed, and how the lot compares with placebo.

Counting rules (also printed on the report):
- exposed: distinct participants with a dispensed or administered dose that used a vial
  of the lot; doses: those doses (wasted and returned doses never reached anyone);
- an adverse event counts for a lot when its onset is on or after the site calendar day
  the participant first received the lot (a participant given two lots counts for both);
- related: relatedness possible, probable or definite;
- the placebo reference pools every lot of a product of kind placebo.

A lot of an active product is flagged when (1) the share of its exposed participants
with an adverse event exceeds the placebo share by more than MARGIN (20 percentage
points; 0 is the reference when no participant received placebo), or (2) it has a
related adverse event of grade 3 or worse, or (3) a related serious adverse event.
Placebo lots are flagged on (2) and (3) only. A flag asks for medical review; with
29 participants it is a signal, not a statistical finding.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import date
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session, contains_eager

from lotrack.models import AdverseEvent, Dose, DoseVial, Lot, Product, User, Vial
from lotrack.models.safety import format_ae_code
from lotrack.schemas.safety import RELATEDNESS
from lotrack.services.adverse_events import READERS, is_related
from lotrack.services.ctcae import CTCAE_VERSION
from lotrack.services.exposure import EXPOSING_STATUSES, first_exposures
from lotrack.services.protocols import active_protocol
from lotrack.services.roles import require_role

MARGIN = 0.20
SEVERE_GRADE = 3
RULES = (
    "Exposed: distinct participants with a dispensed or administered dose using a vial of "
    "the lot. An adverse event counts for a lot when its onset is on or after the day the "
    "participant first received the lot (site calendar). Related: possible, probable or "
    "definite.",
    f"Flagged: an active lot whose share of exposed participants with an adverse event "
    f"exceeds the placebo share by more than {MARGIN * 100:.0f} percentage points (0 when no "
    f"participant received placebo); any lot with a related adverse event of grade "
    f"{SEVERE_GRADE} or worse, or a related serious adverse event. Worst G1-G5: participants "
    "by the worst grade of their adverse events.",
)


@dataclass(frozen=True, slots=True)
class _Event:
    """What the summary counts of an adverse event."""

    ae_code: str
    participant_id: int
    grade: int
    serious: bool
    relatedness: str
    onset_on: date


def _counts(events: list[_Event], exposed: set[int]) -> dict[str, object]:
    worst: dict[int, int] = {}
    for ae in events:
        worst[ae.participant_id] = max(worst.get(ae.participant_id, 0), ae.grade)
    with_ae = len(worst)
    return {
        "exposed": len(exposed),
        "aes": len(events),
        "saes": sum(1 for ae in events if ae.serious),
        "participants_with_ae": with_ae,
        "incidence": round(with_ae / len(exposed), 4) if exposed else None,
        "participants_by_worst_grade": {str(g): sum(1 for w in worst.values() if w == g)
                                        for g in range(1, 6)},
        "aes_by_grade": {str(g): sum(1 for ae in events if ae.grade == g) for g in range(1, 6)},
        "aes_by_relatedness": {r: sum(1 for ae in events if ae.relatedness == r)
                               for r in RELATEDNESS},
        "related_aes": sum(1 for ae in events if is_related(ae.relatedness)),
        "related_severe_aes": sorted(ae.ae_code for ae in events if is_related(ae.relatedness)
                                     and ae.grade >= SEVERE_GRADE),
        "related_saes": sorted(ae.ae_code for ae in events
                               if is_related(ae.relatedness) and ae.serious),
    }


def _flags(row: dict[str, object], placebo: bool, reference: float | None) -> list[str]:
    flags = []
    incidence = row["incidence"]
    base = reference or 0.0
    if not placebo and isinstance(incidence, float) and round(incidence - base, 6) > MARGIN:
        flags.append(f"{incidence:.0%} of exposed participants had an adverse event vs "
                     f"{base:.0%} on placebo (margin {MARGIN * 100:.0f} points)")
    if row["related_severe_aes"]:
        flags.append(f"related grade >= {SEVERE_GRADE}: {', '.join(row['related_severe_aes'])}")
    if row["related_saes"]:
        flags.append(f"related SAE: {', '.join(row['related_saes'])}")
    return flags


def lot_safety_summary(session: Session, actor: User, site_tz: ZoneInfo) -> dict[str, object]:
    require_role(actor, *READERS, action="reading the lot safety summary")
    first = {(pid, f.lot_id): f.day for pid, received in first_exposures(session, site_tz).items()
             for f in received}
    # Each participant's events, and each lot's first exposure days, gathered once: the
    # summary reads them lot by lot (at sponsor scale 1,000 lots, tens of thousands of
    # events and exposures; scanning them all for every lot took most of its time).
    events_of: dict[int, list[_Event]] = defaultdict(list)
    for ae_id, *fields in session.execute(
            select(AdverseEvent.id, AdverseEvent.participant_id, AdverseEvent.grade,
                   AdverseEvent.serious, AdverseEvent.relatedness, AdverseEvent.onset_on)
            .order_by(AdverseEvent.id)):
        event = _Event(format_ae_code(ae_id), *fields)
        events_of[event.participant_id].append(event)
    first_by_lot: dict[int, dict[int, date]] = defaultdict(dict)
    for (pid, lid), day in first.items():
        first_by_lot[lid][pid] = day
    lots = {lot.id: lot for lot in session.execute(
        select(Lot).join(Product).options(contains_eager(Lot.product))
        .where(Lot.id.in_({lid for _, lid in first}))).scalars()}
    doses = Counter(lot_id for lot_id, in session.execute(
        select(Vial.lot_id).join(DoseVial, DoseVial.vial_id == Vial.id)
        .join(Dose, Dose.id == DoseVial.dose_id).where(Dose.status.in_(EXPOSING_STATUSES))
        .group_by(Vial.lot_id, Dose.id)))

    def events_after(keys: dict[int, date]) -> list[_Event]:
        return [ae for pid, day in keys.items() for ae in events_of.get(pid, ())
                if ae.onset_on >= day]

    placebo_ids = {lid for lid, lot in lots.items() if lot.product.kind == "placebo"}
    placebo_first: dict[int, date] = {}
    for (pid, lid), day in first.items():
        if lid in placebo_ids and (pid not in placebo_first or day < placebo_first[pid]):
            placebo_first[pid] = day
    placebo = {"lots": sorted(lots[lid].lot_number for lid in placebo_ids),
               **_counts(events_after(placebo_first), set(placebo_first))}
    reference = placebo["incidence"] if placebo_first else None
    rows = []
    for lid, lot in sorted(lots.items(), key=lambda kv: (kv[1].product.code,
                                                         kv[1].lot_number)):
        firsts = first_by_lot.get(lid, {})
        row: dict[str, object] = {
            "lot": lot.lot_number, "product": lot.product.code, "kind": lot.product.kind,
            "doses": doses[lid], **_counts(events_after(firsts), set(firsts))}
        row["flags"] = _flags(row, lid in placebo_ids, reference)  # type: ignore[arg-type]
        rows.append(row)
    try:
        protocol_code = active_protocol(session)[1].protocol.code
    except Exception:  # no protocol yet: the summary still stands without it
        protocol_code = ""
    return {"document": "lot safety summary", "protocol": protocol_code,
            "ctcae_version": CTCAE_VERSION, "site_time_zone": site_tz.key, "rules": list(RULES),
            "margin": MARGIN, "placebo": placebo, "placebo_reference": reference,
            "lots": rows, "flagged": [r["lot"] for r in rows if r["flags"]]}
