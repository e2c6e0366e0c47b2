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
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
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


@dataclass
class Dataset:
    name: str
    columns: tuple[str, ...]
    rows: list[dict[str, object]] = field(default_factory=list)


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


def treatment_name(product: Product) -> str:
    return "PLACEBO" if product.kind == "placebo" else product.name


def dose_form(product: Product) -> str:
    return "SUSPENSION" if "suspension" in product.dosage_form.lower() \
        else product.dosage_form.upper()


def visit(cycle: int, perfusion: int) -> tuple[int, str]:
    return 10 * cycle + perfusion, f"CYCLE {cycle} PERFUSION {perfusion}"


def _number(value: float) -> str:
    return f"{round(value, 3):g}"


@dataclass(frozen=True)
class _DoseRow:
    dose: Dose
    subject: str
    study: str
    cycle: int
    surgery_at: datetime


def sdtm_datasets(session: Session, actor: User, site_tz: ZoneInfo) -> list[Dataset]:
    require_role(actor, *READERS, action="exporting SDTM datasets")
    doses = [_DoseRow(*row) for row in session.execute(
        select(Dose, Participant.subject_id, ProtocolVersion.code, TreatmentCycle.number,
               Surgery.performed_at)
        .join(Participant, Participant.id == Dose.participant_id)
        .join(ProtocolVersion, ProtocolVersion.id == Participant.protocol_version_id)
        .join(TreatmentCycle, TreatmentCycle.id == Dose.cycle_id)
        .join(Surgery, Surgery.id == TreatmentCycle.surgery_id)
        .order_by(Participant.subject_id, Dose.dispensed_at, Dose.id))]
    vials: dict[int, list[tuple[Vial, Lot, Product]]] = defaultdict(list)
    for dose_id, vial, lot, product in session.execute(
            select(DoseVial.dose_id, Vial, Lot, Product)
            .join(Vial, Vial.id == DoseVial.vial_id).join(Lot, Lot.id == Vial.lot_id)
            .join(Product, Product.id == Lot.product_id).order_by(Vial.serial)):
        vials[dose_id].append((vial, lot, product))
    ex, suppex = _exposure(doses, vials, site_tz)
    da, suppda = _accountability(doses, vials, site_tz)
    return [ex, _adverse_events(session), da, suppex, suppda]


def _usubjid(study: str, subject: str) -> str:
    return f"{study}-{subject}"


def _supp(domain: str, row: dict[str, object], seq_var: str, qnam: str, qlabel: str,
          qval: str, qorig: str) -> dict[str, object]:
    return {"STUDYID": row["STUDYID"], "RDOMAIN": domain, "USUBJID": row["USUBJID"],
            "IDVAR": seq_var, "IDVARVAL": row[seq_var], "QNAM": qnam, "QLABEL": qlabel,
            "QVAL": qval, "QORIG": qorig, "QEVAL": ""}


def _exposure(doses: list[_DoseRow], vials: dict[int, list[tuple[Vial, Lot, Product]]],
              site_tz: ZoneInfo) -> tuple[Dataset, Dataset]:
    ex, supp = Dataset("EX", EX_COLUMNS), Dataset("SUPPEX", SUPP_COLUMNS)
    given = sorted((d for d in doses if d.dose.status == "administered"),
                   key=lambda d: (d.subject, d.dose.administered_at, d.dose.id))
    seq: dict[str, int] = defaultdict(int)
    for item in given:
        dose = item.dose
        used = vials[dose.id]
        by_lot: dict[str, list[tuple[Vial, Lot, Product]]] = defaultdict(list)
        for entry in used:
            by_lot[entry[1].lot_number].append(entry)
        visitnum, visit_name = visit(item.cycle, dose.perfusion)
        at = sdtm_datetime(dose.administered_at, site_tz)
        for lot_number, entries in sorted(by_lot.items()):
            product = entries[0][2]
            if dose.volume_ml is not None:
                volume = dose.volume_ml * len(entries) / len(used)
            else:
                volume = sum(e[1].fill_volume_ml for e in entries)
            seq[item.subject] += 1
            row: dict[str, object] = {
                "STUDYID": item.study, "DOMAIN": "EX",
                "USUBJID": _usubjid(item.study, item.subject), "EXSEQ": seq[item.subject],
                "EXREFID": dose.dose_code, "EXTRT": treatment_name(product),
                "EXDOSE": _number(volume), "EXDOSU": "mL", "EXDOSFRM": dose_form(product),
                "EXDOSFRQ": "ONCE", "EXROUTE": product.route.upper(), "EXLOT": lot_number,
                "VISITNUM": visitnum, "VISIT": visit_name, "EPOCH": EPOCH,
                "EXSTDTC": at, "EXENDTC": at, "EXTPT": f"PERFUSION {dose.perfusion}",
                "EXTPTNUM": dose.perfusion,
                "EXELTM": iso_duration(timedelta(hours=dose.target_hours)),
                "EXTPTREF": "SURGERY", "EXRFTDTC": sdtm_datetime(item.surgery_at, site_tz)}
            ex.rows.append(row)
            assert dose.administered_at is not None
            supp.rows.append(_supp("EX", row, "EXSEQ", "EXAELTM",
                                   "Actual Elapsed Time from Surgery",
                                   iso_duration(dose.administered_at - item.surgery_at),
                                   "DERIVED"))
            supp.rows.append(_supp("EX", row, "EXSEQ", "EXVIALS", "Vial Serial Numbers",
                                   " ".join(e[0].serial for e in entries), "ASSIGNED"))
            if dose.deviation:
                supp.rows.append(_supp("EX", row, "EXSEQ", "EXDEV", "Dosing Window Deviation",
                                       dose.deviation, "CRF"))
    return ex, supp


def _accountability(doses: list[_DoseRow], vials: dict[int, list[tuple[Vial, Lot, Product]]],
                    site_tz: ZoneInfo) -> tuple[Dataset, Dataset]:
    da, supp = Dataset("DA", DA_COLUMNS), Dataset("SUPPDA", SUPP_COLUMNS)
    records: list[tuple[str, datetime, int, str, _DoseRow, Vial, Lot, Product]] = []
    for item in doses:
        for vial, lot, product in vials[item.dose.id]:
            records.append((item.subject, item.dose.dispensed_at, 0, "DISPAMT", item, vial, lot,
                            product))
            if item.dose.status == "returned" and item.dose.closed_at is not None:
                records.append((item.subject, item.dose.closed_at, 1, "RETAMT", item, vial, lot,
                                product))
    seq: dict[str, int] = defaultdict(int)
    for subject, at, _, code, item, vial, lot, product in sorted(
            records, key=lambda r: (r[0], r[1], r[2], r[5].serial)):
        seq[subject] += 1
        visitnum, visit_name = visit(item.cycle, item.dose.perfusion)
        row: dict[str, object] = {
            "STUDYID": item.study, "DOMAIN": "DA", "USUBJID": _usubjid(item.study, subject),
            "DASEQ": seq[subject], "DAREFID": vial.serial, "DASPID": item.dose.dose_code,
            "DATESTCD": code,
            "DATEST": "Dispensed Amount" if code == "DISPAMT" else "Returned Amount",
            "DACAT": treatment_name(product), "DAORRES": "1", "DAORRESU": "VIAL",
            "DASTRESC": "1", "DASTRESN": 1, "DASTRESU": "VIAL", "VISITNUM": visitnum,
            "VISIT": visit_name, "EPOCH": EPOCH, "DADTC": sdtm_datetime(at, site_tz)}
        da.rows.append(row)
        supp.rows.append(_supp("DA", row, "DASEQ", "DALOT", "Lot Number", lot.lot_number,
                               "ASSIGNED"))
    return da, supp


def _adverse_events(session: Session) -> Dataset:
    ae_set = Dataset("AE", AE_COLUMNS)
    seq: dict[str, int] = defaultdict(int)
    for ae, subject, study in session.execute(
            select(AdverseEvent, Participant.subject_id, ProtocolVersion.code)
            .join(Participant, Participant.id == AdverseEvent.participant_id)
            .join(ProtocolVersion, ProtocolVersion.id == Participant.protocol_version_id)
            .order_by(Participant.subject_id, AdverseEvent.onset_on, AdverseEvent.id)):
        seq[subject] += 1
        acn, acn_other = split_action(ae.action_taken)
        ae_set.rows.append({
            "STUDYID": study, "DOMAIN": "AE", "USUBJID": _usubjid(study, subject),
            "AESEQ": seq[subject], "AESPID": ae.ae_code, "AETERM": ae.verbatim_term,
            "AEDECOD": ae.ctcae_term or "", "AEBODSYS": ae.system_organ_class or "",
            "AETOXGR": str(ae.grade), "AESER": "Y" if ae.serious else "N",
            "AEREL": AEREL[ae.relatedness], "AEACN": acn, "AEACNOTH": acn_other,
            "AEOUT": AEOUT[ae.outcome], "AESTDTC": ae.onset_on.isoformat(),
            "AEENDTC": ae.resolved_on.isoformat() if ae.resolved_on else ""})
    return ae_set
