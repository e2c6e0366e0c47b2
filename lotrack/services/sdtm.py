"""CDISC SDTM-shaped datasets: EX (exposure), AE (adverse events), DA (drug
accountability), with SUPPEX and SUPPDA for what the standard keeps outside them.

Conventions (the README repeats them for data management):
- USUBJID is STUDYID-SUBJECT; --SEQ numbers each subject's records from 1 in time order.
- Dates and times (--DTC) are ISO 8601 in the site's local clock time without an offset,
  as collected at the site (SDTM convention); times to the minute. Stored UTC instants
  are converted with the site time zone, so an AE onset date and a perfusion date
  compare on the same calendar. AE dates are dates only, as collected.
- EX has one record per administered dose and lot (a dose drawn from two lots gives two
  records, the volume split by vial). Dispensed doses not yet given, and wasted or
  returned doses, are not exposure; DA still accounts for their vials.
- EXELTM is the planned elapsed time from the cycle's surgery (EXTPTREF "SURGERY",
  EXRFTDTC its time), as SDTMIG defines --ELTM; the actual elapsed time is in SUPPEX
  (QNAM EXAELTM), with the vial serials (EXVIALS) and any dosing-window deviation.
- DA has one DISPAMT record per vial dispensed and one RETAMT per vial returned; the lot
  is in SUPPDA (QNAM DALOT), DA having no lot variable.
- AEACN takes a CDISC action term when `--action` starts with one; the rest of the text
  goes to AEACNOTH.

The export streams: the rows are read BATCH_SIZE at a time (a server-side cursor on
PostgreSQL) in the order the files need, and each participant's records are numbered and
handed on before the next participant is read, so memory holds a batch and one
participant, not the trial. EX and DA are ordered by subject in code point order, as
Python sorts strings (the database is asked for that order, whatever its collation).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from itertools import groupby
from operator import attrgetter, itemgetter
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, Row, Select, select
from sqlalchemy.orm import Session

from lotrack.models import (
    AdverseEvent,
    Dose,
    DoseVial,
    Lot,
    Participant,
    Product,
    ProtocolVersion,
    Surgery,
    TreatmentCycle,
    User,
    Vial,
)
from lotrack.models.dosing import format_dose_code
from lotrack.models.safety import format_ae_code
from lotrack.services.adverse_events import READERS
from lotrack.services.roles import require_role

EX_COLUMNS = ("STUDYID", "DOMAIN", "USUBJID", "EXSEQ", "EXREFID", "EXTRT", "EXDOSE", "EXDOSU",
              "EXDOSFRM", "EXDOSFRQ", "EXROUTE", "EXLOT", "VISITNUM", "VISIT", "EPOCH",
              "EXSTDTC", "EXENDTC", "EXTPT", "EXTPTNUM", "EXELTM", "EXTPTREF", "EXRFTDTC")
AE_COLUMNS = ("STUDYID", "DOMAIN", "USUBJID", "AESEQ", "AESPID", "AETERM", "AEDECOD",
              "AEBODSYS", "AETOXGR", "AESER", "AEREL", "AEACN", "AEACNOTH", "AEOUT",
              "AESTDTC", "AEENDTC")
DA_COLUMNS = ("STUDYID", "DOMAIN", "USUBJID", "DASEQ", "DAREFID", "DASPID", "DATESTCD",
              "DATEST", "DACAT", "DAORRES", "DAORRESU", "DASTRESC", "DASTRESN", "DASTRESU",
              "VISITNUM", "VISIT", "EPOCH", "DADTC")
SUPP_COLUMNS = ("STUDYID", "RDOMAIN", "USUBJID", "IDVAR", "IDVARVAL", "QNAM", "QLABEL",
                "QVAL", "QORIG", "QEVAL")

AEREL = {"unrelated": "NOT RELATED", "unlikely": "UNLIKELY RELATED",
         "possible": "POSSIBLY RELATED", "probable": "PROBABLY RELATED",
         "definite": "RELATED"}
AEOUT = {"recovered": "RECOVERED/RESOLVED", "recovering": "RECOVERING/RESOLVING",
         "not_recovered": "NOT RECOVERED/NOT RESOLVED",
         "recovered_with_sequelae": "RECOVERED/RESOLVED WITH SEQUELAE", "fatal": "FATAL",
         "unknown": "UNKNOWN"}
# CDISC controlled terminology for action taken with study treatment (codelist ACN).
ACN_TERMS = ("DOSE NOT CHANGED", "DRUG WITHDRAWN", "DRUG INTERRUPTED", "DOSE REDUCED",
             "DOSE INCREASED", "DOSE RATE REDUCED", "NOT APPLICABLE", "UNKNOWN")
EPOCH = "TREATMENT"


# Rows fetched from the database at a time.
BATCH_SIZE = 2_000


@dataclass
class Dataset:
    name: str
    columns: tuple[str, ...]
    rows: list[dict[str, object]] = field(default_factory=list)


# The datasets in the order they are listed, each with its columns.
DATASETS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("EX", EX_COLUMNS), ("AE", AE_COLUMNS), ("DA", DA_COLUMNS), ("SUPPEX", SUPP_COLUMNS),
    ("SUPPDA", SUPP_COLUMNS))

# One record of one dataset: (dataset name, row).
Record = tuple[str, dict[str, object]]


def sdtm_datetime(value: datetime | None, site_tz: ZoneInfo) -> str:
    return value.astimezone(site_tz).strftime("%Y-%m-%dT%H:%M") if value else ""


def iso_duration(delta: timedelta) -> str:
    """An elapsed time as ISO 8601, to the minute: PT24H, PT24H30M, PT0M."""
    minutes = round(delta.total_seconds() / 60)
    sign, minutes = ("-" if minutes < 0 else ""), abs(minutes)
    hours, rest = divmod(minutes, 60)
    text = (f"{hours}H" if hours else "") + (f"{rest}M" if rest or not hours else "")
    return f"{sign}PT{text}"


def split_action(text: str | None) -> tuple[str, str]:
    """(AEACN, AEACNOTH) from the action typed by the investigator."""
    if not text:
        return "", ""
    for term in ACN_TERMS:
        head, rest = text[:len(term)], text[len(term):]
        if head.upper() == term and (not rest or not rest[0].isalnum()):
            return term, rest.lstrip(" ;,:.-").strip()
    return "", text.strip()


def treatment_name(kind: str, name: str) -> str:
    return "PLACEBO" if kind == "placebo" else name


def dose_form(dosage_form: str) -> str:
    return "SUSPENSION" if "suspension" in dosage_form.lower() else dosage_form.upper()


def visit(cycle: int, perfusion: int) -> tuple[int, str]:
    return 10 * cycle + perfusion, f"CYCLE {cycle} PERFUSION {perfusion}"


def _number(value: float) -> str:
    return f"{round(value, 3):g}"


@dataclass(frozen=True, slots=True)
class _VialUsed:
    serial: str
    lot_number: str
    fill_volume_ml: float
    treatment: str  # EXTRT, DACAT
    form: str
    route: str


@dataclass(slots=True)
class _DoseRow:
    id: int
    status: str
    perfusion: int
    dispensed_at: datetime
    administered_at: datetime | None
    closed_at: datetime | None
    volume_ml: float | None
    target_hours: float
    deviation: str | None
    subject: str
    study: str
    cycle: int
    surgery_at: datetime
    vials: list[_VialUsed] = field(default_factory=list)

    @property
    def dose_code(self) -> str:
        return format_dose_code(self.id)


def require_exporter(actor: User) -> None:
    require_role(actor, *READERS, action="exporting SDTM datasets")


def sdtm_records(session: Session, actor: User, site_tz: ZoneInfo,
                 batch_size: int = BATCH_SIZE) -> Iterator[Record]:
    """Every record of every dataset, as it is read: each dataset's records come in the
    order of its file (datasets interleave). The actor is checked now, the rows are read
    as the records are taken; all within `session`'s transaction, which should read one
    snapshot (REPEATABLE READ on PostgreSQL)."""
    require_exporter(actor)
    return _records(session, site_tz, batch_size)


def sdtm_datasets(session: Session, actor: User, site_tz: ZoneInfo,
                  batch_size: int = BATCH_SIZE) -> list[Dataset]:
    """Every dataset with all its rows in memory: for small trials (the demo, tests)."""
    datasets = {name: Dataset(name, columns) for name, columns in DATASETS}
    for name, row in sdtm_records(session, actor, site_tz, batch_size):
        datasets[name].rows.append(row)
    return list(datasets.values())


def _records(session: Session, site_tz: ZoneInfo, batch_size: int) -> Iterator[Record]:
    rows = session.execute(_dose_vials(_codepoint_order(session, Participant.subject_id)),
                           execution_options={"yield_per": batch_size})
    for _, subject_rows in groupby(rows, key=itemgetter(_SUBJECT)):
        doses = _participant_doses(subject_rows)
        yield from _exposure(doses, site_tz)
        yield from _accountability(doses, site_tz)
    yield from _adverse_events(session, batch_size)


def _codepoint_order(session: Session, column: ColumnElement[str]) -> ColumnElement[str]:
    """`column` to sort by as Python compares strings: SQLite's BINARY order is that
    already; PostgreSQL's "C" collation compares UTF-8 bytes, whose order is the same."""
    if session.get_bind().dialect.name == "postgresql":
        return column.collate("C")
    return column


_SUBJECT = 9  # the subject's place in the rows of _dose_vials


def _dose_vials(subject_order: ColumnElement[str]) -> Select[Any]:
    """One row per vial of each dose, by subject, then as the doses were dispensed; a
    dose's vials together, by serial."""
    return (select(Dose.id, Dose.status, Dose.perfusion, Dose.dispensed_at,
                   Dose.administered_at, Dose.closed_at, Dose.volume_ml, Dose.target_hours,
                   Dose.deviation, Participant.subject_id.label("subject"),
                   ProtocolVersion.code.label("study"), TreatmentCycle.number.label("cycle"),
                   Surgery.performed_at.label("surgery_at"), Vial.serial, Lot.lot_number,
                   Lot.fill_volume_ml, Product.kind, Product.name, Product.dosage_form,
                   Product.route)
            .join(Participant, Participant.id == Dose.participant_id)
            .join(ProtocolVersion, ProtocolVersion.id == Participant.protocol_version_id)
            .join(TreatmentCycle, TreatmentCycle.id == Dose.cycle_id)
            .join(Surgery, Surgery.id == TreatmentCycle.surgery_id)
            .join(DoseVial, DoseVial.dose_id == Dose.id)
            .join(Vial, Vial.id == DoseVial.vial_id).join(Lot, Lot.id == Vial.lot_id)
            .join(Product, Product.id == Lot.product_id)
            .order_by(subject_order, Dose.dispensed_at, Dose.id, Vial.serial))


def _participant_doses(rows: Iterable[Row[Any]]) -> list[_DoseRow]:
    """One participant's doses, each with its vials, from the rows of `_dose_vials`."""
    doses: list[_DoseRow] = []
    for (dose_id, status, perfusion, dispensed_at, administered_at, closed_at, volume_ml,
         target_hours, deviation, subject, study, cycle, surgery_at, serial, lot_number,
         fill_volume_ml, kind, name, dosage_form, route) in rows:
        if not doses or doses[-1].id != dose_id:
            doses.append(_DoseRow(dose_id, status, perfusion, dispensed_at, administered_at,
                                  closed_at, volume_ml, target_hours, deviation, subject,
                                  study, cycle, surgery_at))
        doses[-1].vials.append(_VialUsed(serial, lot_number, fill_volume_ml,
                                         *_product_terms(kind, name, dosage_form, route)))
    return doses


@lru_cache(maxsize=256)
def _product_terms(kind: str, name: str, dosage_form: str, route: str) -> tuple[str, str, str]:
    """(EXTRT, EXDOSFRM, EXROUTE) of a product: a trial has a handful of products."""
    return treatment_name(kind, name), dose_form(dosage_form), route.upper()


def _usubjid(study: str, subject: str) -> str:
    return f"{study}-{subject}"


def _supp(domain: str, row: dict[str, object], seq_var: str, qnam: str, qlabel: str,
          qval: str, qorig: str) -> Record:
    return f"SUPP{domain}", {
        "STUDYID": row["STUDYID"], "RDOMAIN": domain, "USUBJID": row["USUBJID"],
        "IDVAR": seq_var, "IDVARVAL": row[seq_var], "QNAM": qnam, "QLABEL": qlabel,
        "QVAL": qval, "QORIG": qorig, "QEVAL": ""}


def _exposure(doses: list[_DoseRow], site_tz: ZoneInfo) -> Iterator[Record]:
    """EX and SUPPEX records of one participant's doses."""
    given = sorted((d for d in doses if d.status == "administered"),
                   key=lambda d: (d.administered_at, d.id))
    seq = 0
    for dose in given:
        used = dose.vials
        by_lot: dict[str, list[_VialUsed]] = defaultdict(list)
        for entry in used:
            by_lot[entry.lot_number].append(entry)
        visitnum, visit_name = visit(dose.cycle, dose.perfusion)
        at = sdtm_datetime(dose.administered_at, site_tz)
        for lot_number, entries in sorted(by_lot.items()):
            first = entries[0]
            if dose.volume_ml is not None:
                volume = dose.volume_ml * len(entries) / len(used)
            else:
                volume = sum(e.fill_volume_ml for e in entries)
            seq += 1
            row: dict[str, object] = {
                "STUDYID": dose.study, "DOMAIN": "EX",
                "USUBJID": _usubjid(dose.study, dose.subject), "EXSEQ": seq,
                "EXREFID": dose.dose_code, "EXTRT": first.treatment,
                "EXDOSE": _number(volume), "EXDOSU": "mL", "EXDOSFRM": first.form,
                "EXDOSFRQ": "ONCE", "EXROUTE": first.route, "EXLOT": lot_number,
                "VISITNUM": visitnum, "VISIT": visit_name, "EPOCH": EPOCH,
                "EXSTDTC": at, "EXENDTC": at, "EXTPT": f"PERFUSION {dose.perfusion}",
                "EXTPTNUM": dose.perfusion,
                "EXELTM": iso_duration(timedelta(hours=dose.target_hours)),
                "EXTPTREF": "SURGERY", "EXRFTDTC": sdtm_datetime(dose.surgery_at, site_tz)}
            yield "EX", row
            assert dose.administered_at is not None
            yield _supp("EX", row, "EXSEQ", "EXAELTM", "Actual Elapsed Time from Surgery",
                        iso_duration(dose.administered_at - dose.surgery_at), "DERIVED")
            yield _supp("EX", row, "EXSEQ", "EXVIALS", "Vial Serial Numbers",
                        " ".join(e.serial for e in entries), "ASSIGNED")
            if dose.deviation:
                yield _supp("EX", row, "EXSEQ", "EXDEV", "Dosing Window Deviation",
                            dose.deviation, "CRF")


def _accountability(doses: list[_DoseRow], site_tz: ZoneInfo) -> Iterator[Record]:
    """DA and SUPPDA records of one participant's doses."""
    records: list[tuple[datetime, int, str, _DoseRow, _VialUsed]] = []
    for dose in doses:
        for vial in dose.vials:
            records.append((dose.dispensed_at, 0, "DISPAMT", dose, vial))
            if dose.status == "returned" and dose.closed_at is not None:
                records.append((dose.closed_at, 1, "RETAMT", dose, vial))
    records.sort(key=lambda r: (r[0], r[1], r[4].serial))
    for seq, (at, _, code, dose, vial) in enumerate(records, start=1):
        visitnum, visit_name = visit(dose.cycle, dose.perfusion)
        row: dict[str, object] = {
            "STUDYID": dose.study, "DOMAIN": "DA", "USUBJID": _usubjid(dose.study, dose.subject),
            "DASEQ": seq, "DAREFID": vial.serial, "DASPID": dose.dose_code,
            "DATESTCD": code,
            "DATEST": "Dispensed Amount" if code == "DISPAMT" else "Returned Amount",
            "DACAT": vial.treatment, "DAORRES": "1", "DAORRESU": "VIAL",
            "DASTRESC": "1", "DASTRESN": 1, "DASTRESU": "VIAL", "VISITNUM": visitnum,
            "VISIT": visit_name, "EPOCH": EPOCH, "DADTC": sdtm_datetime(at, site_tz)}
        yield "DA", row
        yield _supp("DA", row, "DASEQ", "DALOT", "Lot Number", vial.lot_number, "ASSIGNED")


def _adverse_events(session: Session, batch_size: int) -> Iterator[Record]:
    rows = session.execute(
        select(AdverseEvent.id, AdverseEvent.verbatim_term, AdverseEvent.ctcae_term,
               AdverseEvent.system_organ_class, AdverseEvent.grade, AdverseEvent.serious,
               AdverseEvent.relatedness, AdverseEvent.outcome, AdverseEvent.action_taken,
               AdverseEvent.onset_on, AdverseEvent.resolved_on,
               Participant.subject_id.label("subject"), ProtocolVersion.code.label("study"))
        .join(Participant, Participant.id == AdverseEvent.participant_id)
        .join(ProtocolVersion, ProtocolVersion.id == Participant.protocol_version_id)
        .order_by(Participant.subject_id, AdverseEvent.onset_on, AdverseEvent.id),
        execution_options={"yield_per": batch_size})
    for _, events in groupby(rows, key=attrgetter("subject")):
        for seq, ae in enumerate(events, start=1):
            acn, acn_other = split_action(ae.action_taken)
            yield "AE", {
                "STUDYID": ae.study, "DOMAIN": "AE", "USUBJID": _usubjid(ae.study, ae.subject),
                "AESEQ": seq, "AESPID": format_ae_code(ae.id), "AETERM": ae.verbatim_term,
                "AEDECOD": ae.ctcae_term or "", "AEBODSYS": ae.system_organ_class or "",
                "AETOXGR": str(ae.grade), "AESER": "Y" if ae.serious else "N",
                "AEREL": AEREL[ae.relatedness], "AEACN": acn, "AEACNOTH": acn_other,
                "AEOUT": AEOUT[ae.outcome], "AESTDTC": ae.onset_on.isoformat(),
                "AEENDTC": ae.resolved_on.isoformat() if ae.resolved_on else ""}
