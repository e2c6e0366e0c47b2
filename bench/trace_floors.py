"""Hand-written SQL floors for `lotrack trace`: what the traces would cost with no library.

Each floor returns the same information its trace returns (the trace's rows before they
become dicts), in as few plain queries as a careful engineer would write by hand, so that
bench/run.py can time a trace beside its floor in the same run. Each `same_*` function
checks that a trace and its floor agree on the essentials, so a floor cannot drift into
returning less than the trace it is timed against.

    floor = lot_floor(session, "BIG-500")
    assert same_lot(traces.trace_lot(session, reader, "BIG-500", None, UTC_TZ), floor)

Floors return site-independent rows (UTC timestamps as stored); the checks compare
codes, serials and counts, not rendered times. Tables and columns are spelled out
here on purpose: a floor must not share code with what it measures.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import bindparam, text
from sqlalchemy.engine import Row
from sqlalchemy.orm import Session

from lotrack.models.base import UTCDateTime
from lotrack.models.dosing import format_dose_code
from lotrack.models.safety import format_ae_code, parse_ae_code

Rows = dict[str, list[Row]]

EXPOSING = "('dispensed', 'administered')"

# A lot's header with its history flags: audit events keyed "<product>/<lot>", and the
# doses dispensed from it with a deviation.
_LOTS = """
SELECT l.id, l.lot_number, p.code AS product, l.status, l.expiry_on,
  (SELECT count(*) FROM audit_events a WHERE a.entity = 'lot'
     AND a.entity_id = p.code || '/' || l.lot_number AND a.action = 'on_hold') AS holds,
  (SELECT count(*) FROM audit_events a WHERE a.entity = 'lot'
     AND a.entity_id = p.code || '/' || l.lot_number AND a.action = 'recalled') AS recalls,
  (SELECT count(*) FROM audit_events a WHERE a.entity = 'lot'
     AND a.entity_id = p.code || '/' || l.lot_number AND a.action = 'flag_for_review')
     AS excursions,
  (SELECT count(DISTINCT d.id) FROM vials v JOIN dose_vials dv ON dv.vial_id = v.id
     JOIN doses d ON d.id = dv.dose_id WHERE v.lot_id = l.id AND d.deviation IS NOT NULL)
     AS deviations
FROM lots l JOIN products p ON p.id = l.product_id
"""

_AE_COLUMNS = """ae.participant_id, ae.id, ae.ctcae_term, ae.verbatim_term, ae.needs_coding,
  ae.grade, ae.serious, ae.relatedness, ae.outcome, ae.onset_on"""

_DOSE_COLUMNS = """d.id AS dose_id, c.number AS cycle, d.perfusion, d.status, d.dispensed_at,
  d.administered_at, d.hours_since_surgery, d.deviation"""

LOT_HEADER = text(_LOTS + " WHERE l.lot_number = :lot")
LOT_VIALS = text(f"""
SELECT v.serial, v.status AS vial_status, v.on_hold, s.path, v.position, {_DOSE_COLUMNS},
  p.id AS participant_id, p.subject_id, p.group_code, p.status AS participant_status
FROM vials v
LEFT JOIN storage_locations s ON s.id = v.location_id
LEFT JOIN dose_vials dv ON dv.vial_id = v.id
LEFT JOIN doses d ON d.id = dv.dose_id
LEFT JOIN treatment_cycles c ON c.id = d.cycle_id
LEFT JOIN participants p ON p.id = d.participant_id
WHERE v.lot_id = :lot_id ORDER BY v.number""")
LOT_AES = text(f"""
SELECT {_AE_COLUMNS} FROM adverse_events ae
WHERE ae.participant_id IN (
  SELECT d.participant_id FROM vials v JOIN dose_vials dv ON dv.vial_id = v.id
  JOIN doses d ON d.id = dv.dose_id WHERE v.lot_id = :lot_id AND d.status IN {EXPOSING})
ORDER BY ae.onset_on, ae.id""")

PARTICIPANT = text("SELECT id, subject_id, group_code, status FROM participants "
                   "WHERE subject_id = :subject")
_RECEIVED = f"""
SELECT {_DOSE_COLUMNS}, v.serial, l.id AS lot_id, l.lot_number, pr.code AS product
FROM doses d
JOIN treatment_cycles c ON c.id = d.cycle_id
JOIN dose_vials dv ON dv.dose_id = d.id
JOIN vials v ON v.id = dv.vial_id
JOIN lots l ON l.id = v.lot_id
JOIN products pr ON pr.id = l.product_id
WHERE d.participant_id = :pid"""
PARTICIPANT_DOSES = text(_RECEIVED + " ORDER BY d.dispensed_at, v.serial")
PARTICIPANT_LOTS = text(_LOTS + """ WHERE l.id IN (
  SELECT v.lot_id FROM doses d JOIN dose_vials dv ON dv.dose_id = d.id
  JOIN vials v ON v.id = dv.vial_id WHERE d.participant_id = :pid) ORDER BY l.lot_number""")
PARTICIPANT_AES = text(f"SELECT {_AE_COLUMNS} FROM adverse_events ae "
                       "WHERE ae.participant_id = :pid ORDER BY ae.onset_on, ae.id")

AE = text(f"""SELECT {_AE_COLUMNS}, p.subject_id, p.group_code FROM adverse_events ae
JOIN participants p ON p.id = ae.participant_id WHERE ae.id = :id""")
_BEFORE = f" AND d.status IN {EXPOSING} AND d.dispensed_at < :before"
AE_DOSES = text(_RECEIVED + _BEFORE + " ORDER BY d.dispensed_at, v.serial").bindparams(
    bindparam("before", type_=UTCDateTime()))
AE_LOTS = text(_LOTS + f""" WHERE l.id IN (
  SELECT v.lot_id FROM doses d JOIN dose_vials dv ON dv.dose_id = d.id
  JOIN vials v ON v.id = dv.vial_id WHERE d.participant_id = :pid{_BEFORE})
ORDER BY l.lot_number""").bindparams(bindparam("before", type_=UTCDateTime()))


def lot_floor(session: Session, lot_number: str) -> Rows:
    """`trace lot` by hand: the lot with its flags, its vials (where, dose, recipient, in
    vial order), and every adverse event of a participant who received one of its vials.

    Returns {"lot": [one row], "vials": rows, "adverse_events": rows}; the AEs are all of
    each recipient's (the trace keeps those from her first exposure on, a site-calendar
    comparison done in Python either way).
    """
    lot = session.execute(LOT_HEADER, {"lot": lot_number}).all()
    params = {"lot_id": lot[0].id}
    return {"lot": lot, "vials": session.execute(LOT_VIALS, params).all(),
            "adverse_events": session.execute(LOT_AES, params).all()}


def participant_floor(session: Session, subject: str) -> Rows:
    """`trace participant` by hand: the participant, every dose she was dispensed (one row
    per vial, with cycle, lot and product, in time order), her lots with their flags, and
    her adverse events.

    Returns {"participant": [one row], "doses": rows, "lots": rows, "adverse_events": rows}.
    """
    person = session.execute(PARTICIPANT, {"subject": subject}).all()
    params = {"pid": person[0].id}
    return {"participant": person, "doses": session.execute(PARTICIPANT_DOSES, params).all(),
            "lots": session.execute(PARTICIPANT_LOTS, params).all(),
            "adverse_events": session.execute(PARTICIPANT_AES, params).all()}


def ae_floor(session: Session, ae_code: str) -> Rows:
    """`trace ae` by hand: the event with its participant, every dose that reached her
    before the end of the onset day (UTC calendar: the bench runs with LOTRACK_TZ=UTC),
    one row per vial, and the lots of those doses with their flags.

    Returns {"ae": [one row], "doses": rows, "lots": rows}.
    """
    ae = session.execute(AE, {"id": parse_ae_code(ae_code)}).all()
    onset = date.fromisoformat(str(ae[0].onset_on))  # a string from SQLite's text()
    before = datetime.combine(onset + timedelta(days=1), time(), tzinfo=UTC)
    params = {"pid": ae[0].participant_id, "before": before}
    return {"ae": ae, "doses": session.execute(AE_DOSES, params).all(),
            "lots": session.execute(AE_LOTS, params).all()}


FLAGS = ("holds", "recalls", "excursions", "deviations")


def _flags(row: Row) -> dict[str, int]:
    return {name: getattr(row, name) for name in FLAGS}


def _dose_codes(rows: list[Row]) -> list[str]:
    return list(dict.fromkeys(format_dose_code(r.dose_id) for r in rows))


def same_lot(trace: dict, floor: Rows) -> bool:
    """The trace and the floor name the same lot and flags, the same vials in the same
    order with the same dose and recipient each, and every AE the trace lists is one of
    a recipient's in the floor."""
    [lot] = floor["lot"]
    vials = [(v.serial, None if v.dose_id is None else format_dose_code(v.dose_id), v.subject_id)
             for v in floor["vials"]]
    ae_codes = {format_ae_code(a.id) for a in floor["adverse_events"]}
    traced_aes = {a["ae"] for p in trace["participants"]
                  for a in p["adverse_events_after_exposure"]}
    return (trace["lot"] == lot.lot_number and trace["flags"] == _flags(lot)
            and [(v["serial"], v["dose"], v["participant"]) for v in trace["vials"]] == vials
            and traced_aes <= ae_codes)


def same_participant(trace: dict, floor: Rows) -> bool:
    """Same subject, same doses in the same order with the same vials, same lots with
    the same flags, same adverse events."""
    doses = floor["doses"]
    return (trace["subject"] == floor["participant"][0].subject_id
            and [d["dose"] for d in trace["doses"]] == _dose_codes(doses)
            and sorted(v for d in trace["doses"] for v in d["vials"])
            == sorted(r.serial for r in doses)
            and [(x["lot"], {k: x[k] for k in FLAGS}) for x in trace["lots"]]
            == [(r.lot_number, _flags(r)) for r in floor["lots"]]
            and [a["ae"] for a in trace["adverse_events"]]
            == [format_ae_code(r.id) for r in floor["adverse_events"]])


def same_ae(trace: dict, floor: Rows) -> bool:
    """Same event, same doses before onset (in order, with the same vials), same lots,
    and the same flags for each lot (UTC site calendar)."""
    flags = {r.lot_number: _flags(r) for r in floor["lots"]}
    doses = floor["doses"]
    return (trace["ae"]["ae"] == format_ae_code(floor["ae"][0].id)
            and [d["dose"] for d in trace["doses_before_onset"]] == _dose_codes(doses)
            and [v for d in trace["doses_before_onset"] for v in d["vials"]]
            == [r.serial for r in doses]
            and trace["lots"] == sorted(flags)
            and all(f == flags[lot] for d in trace["doses_before_onset"]
                    for lot, f in d["lot_flags"].items()))
