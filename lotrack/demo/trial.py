"""The demo's clinical part: protocol, enrolment, surgeries and every perfusion."""

from __future__ import annotations

from datetime import date, datetime, timedelta

from lotrack import db
from lotrack.demo.core import DEMO_PASSWORD, SITE_TZ, Demo, local
from lotrack.demo.labels import dose_label_action
from lotrack.schemas.protocol import ProtocolFile, default_protocol_path, load_protocol_file
from lotrack.services import dosing, participants, protocols, stock
from lotrack.services.eligibility import Candidate


def load_protocol(demo: Demo) -> ProtocolFile:
    protocol = load_protocol_file(default_protocol_path())
    at = local(date(2026, 1, 8), 9)
    version = demo.act("inv.liu", at, lambda s, a: protocols.load_protocol(
        s, a, protocol, default_protocol_path().name))
    demo.act("inv.liu", at + timedelta(hours=1), lambda s, a: protocols.activate_protocol(
        s, a, version.code, version.version, DEMO_PASSWORD))
    demo.say(f"Protocol {protocol.protocol.code} version {version.version} active.")
    return protocol


def fefo(demo: Demo, product: str, count: int, at: datetime) -> list[str]:
    with db.unit_of_work(demo.engine) as session:
        return stock.pick_fefo(session, product, count, at, SITE_TZ)


def eligible_candidate(demo: Demo, protocol: ProtocolFile, consented: date) -> Candidate:
    rng = demo.rng
    answers = ({q.code: True for q in protocol.eligibility.inclusions}
               | {q.code: False for q in protocol.eligibility.exclusions})
    return Candidate(
        sex="F", birth_date=consented - timedelta(days=int(rng.uniform(24, 39) * 365.25)),
        consented=consented, iua_score=rng.randint(10, 26), amh_ng_ml=round(rng.uniform(1.2, 4.5), 1),
        afc=rng.randint(5, 14), platelets_10e9_l=rng.randint(150, 320),
        aptt_x_uln=round(rng.uniform(0.8, 1.2), 2), hba1c_percent=round(rng.uniform(4.8, 6.1), 1),
        answers=answers)




# Participants whose story differs from the routine (index in enrolment order).
RECURRENCE = 2          # adhesions recur at the 1-month hysteroscopy: a second cycle
WITHDRAWN = 19          # withdraws consent after her first perfusion
LATE_PERFUSION = 4      # perfusion 2 given outside its window, with a deviation
WASTED_DOSE = 11        # perfusion 1 not given before its use-by time: wasted, replaced


def run_trial(demo: Demo, protocol: ProtocolFile) -> None:
    groups = _allocation(protocol)
    first_consent = date(2026, 3, 2)
    for index, group in enumerate(groups):
        subject = f"IUA-{index + 1:03d}"
        consented = first_consent + timedelta(days=3 * index)
        _enrol(demo, protocol, subject, group, consented)
        surgery_at = local(consented + timedelta(days=3), 9, 30)
        _cycle(demo, protocol, index, subject, group, surgery_at)
        if index == WITHDRAWN:
            continue
        follow_up = local(consented + timedelta(days=33), 10)
        recurrence = index == RECURRENCE
        demo.act("inv.zhou", follow_up, lambda s, a, sub=subject, t=follow_up, r=recurrence:
                 participants.record_hysteroscopy(s, a, sub, t, r))
        if recurrence:
            repeat_at = local(consented + timedelta(days=36), 9)
            _cycle(demo, protocol, index, subject, group, repeat_at, cycle=2)
    demo.say(f"Enrolled {len(groups)} participants in {len(protocol.groups)} groups; every "
             "perfusion dispensed, verified and administered (one recurrence with a second "
             "cycle, one withdrawal, one late perfusion, one wasted dose).")


def _allocation(protocol: ProtocolFile) -> list[str]:
    """Groups in turn until each has its planned number (an open-label allocation list)."""
    remaining = {g.code: g.planned for g in protocol.groups}
    order: list[str] = []
    while any(remaining.values()):
        for group in protocol.groups:
            if remaining[group.code]:
                order.append(group.code)
                remaining[group.code] -= 1
    return order


def _enrol(demo: Demo, protocol: ProtocolFile, subject: str, group: str, consented: date) -> None:
    candidate = eligible_candidate(demo, protocol, consented)
    demo.act("inv.liu", local(consented, 14), lambda s, a: participants.enroll(
        s, a, subject, group, candidate, DEMO_PASSWORD))


def _cycle(demo: Demo, protocol: ProtocolFile, index: int, subject: str, group: str,
           surgery_at: datetime, cycle: int = 1) -> None:
    demo.act("inv.liu", surgery_at, lambda s, a: participants.record_surgery(
        s, a, subject, surgery_at, demo.rng.randint(10, 24), SITE_TZ))
    product = protocol.group(group).product
    vials_per_dose = protocol.group(group).vials_per_perfusion
    for perfusion in protocol.cycle.perfusions:
        jitter = timedelta(minutes=demo.rng.randint(-90, 120))
        at = surgery_at + timedelta(hours=perfusion.target_hours) + jitter
        deviation = None
        if index == LATE_PERFUSION and perfusion.number == 2 and cycle == 1:
            at = surgery_at + timedelta(hours=perfusion.target_hours + 9)
            deviation = "participant delayed by transport; PI agreed to perfuse late"
        dose = _dispense(demo, product, vials_per_dose, subject, at, deviation)
        if index == WASTED_DOSE and perfusion.number == 1 and cycle == 1:
            demo.act("pharm.chen", dose.use_by + timedelta(minutes=10),
                     lambda s, a, code=dose.dose_code: dosing.close_unadministered(
                         s, a, code, "wasted", "not perfused before its post-thaw use-by time "
                         "(theatre delay)"))
            at = dose.use_by + timedelta(minutes=30)
            dose = _dispense(demo, product, vials_per_dose, subject, at, None)
        given = dose.dispensed_at + timedelta(minutes=demo.rng.randint(15, 50))
        demo.act("inv.liu", given, lambda s, a, code=dose.dose_code, t=given: dosing.administer(
            s, a, code, t, float(vials_per_dose)))
        if index == WITHDRAWN and cycle == 1:
            demo.act("inv.liu", given + timedelta(days=1), lambda s, a: participants.withdraw(
                s, a, subject, "withdrew consent (moving to another city)"))
            return


def _dispense(demo: Demo, product: str, count: int, subject: str, at: datetime,
              deviation: str | None):
    serials = fefo(demo, product, count, at)
    request = dosing.DispenseRequest(subject, tuple(serials), at, "pharm.wang", deviation)

    def dispense_and_label(session, actor):
        dose = dosing.dispense_perfusion(session, actor, request, DEMO_PASSWORD, DEMO_PASSWORD,
                                         SITE_TZ)
        return dose, dose_label_action(demo, dose.dose_code)(session, actor)

    dose, staged = demo.act("pharm.chen", at, dispense_and_label)
    staged.commit()
    return dose
