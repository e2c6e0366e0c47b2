"""Site supply on both databases: shipments through every state, receipt confirmed by
scan, quarantine and its release, do-not-dispense and do-not-ship offsets at their exact
edges, first-expiry-first-out picking, and QC alert limits."""

import re
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from freezegun import freeze_time
from sqlalchemy import select
from trialkit import PASSWORD, PROTOCOL, T0, Trial, qc_rows

from lotrack import audit, db, gs1
from lotrack.errors import InvalidInput, LotrackError, PermissionDenied, RuleViolation
from lotrack.models import Product, Shipment, Vial
from lotrack.schemas import parse
from lotrack.schemas.lots import LotIn, ProductIn, SpecFile, load_spec_file, shipped_spec_path
from lotrack.schemas.protocol import Supply
from lotrack.services import (
    consistency,
    documents,
    dosing,
    lot_views,
    lots,
    products,
    protocols,
    qc,
    shipments,
    specifications,
    stock,
    storage,
)
from lotrack.services.shipments import LotPick

UTC_TZ = ZoneInfo("UTC")
DEPOT_BOX = "DEPOT/FRZ-1/R1/BOX-1"
SITE_BOX = "SITE/FRZ-A/R1/BOX-1"  # made by Trial.build
OTHER_BOX = "OTHER/FRZ-1/R1/BOX-1"
NOW = datetime(2026, 4, 20, 9, 0, tzinfo=UTC)  # supply runs before the surgeries at T0
DISPATCH, RECEIPT, LATER = NOW + timedelta(hours=1), NOW + timedelta(days=1), NOW + timedelta(days=2)


@pytest.fixture
def trial(database, make_user):
    built = Trial.build(database, make_user)
    for box in (DEPOT_BOX, OTHER_BOX):
        built.act("pharm.chen", lambda s, a, b=box: storage.add_location(s, a, b, 200))
    return built


def depot_lot(trial: Trial, vials: int = 4, product: str = "IPSEXO",
              expiry: date = date(2026, 12, 31), release: bool = True) -> str:
    """A lot received into the depot's freezer, ready to ship."""
    with freeze_time(NOW - timedelta(days=20)):
        number = trial.lot(product, vials=vials, expiry=expiry, release=release, receive=False)
        trial.act("pharm.chen", lambda s, a: storage.receive_lot(
            s, a, lots.get_lot(s, number), [DEPOT_BOX], NOW - timedelta(days=20)))
    return number


def create(trial: Trial, picks=(), serials=(), origin: str = "DEPOT", site: str = "SITE",
           at: datetime = NOW, user: str = "pharm.chen") -> str:
    with freeze_time(at):
        return trial.act(user, lambda s, a: shipments.create_shipment(
            s, a, origin, site, [LotPick(n, c) for n, c in picks], list(serials), UTC_TZ)).code


def dispatch(trial: Trial, code: str, monitor: str | None = "TL-0042",
             at: datetime = DISPATCH) -> Shipment:
    with freeze_time(at):
        return trial.act("pharm.chen", lambda s, a: shipments.dispatch_shipment(
            s, a, code, "World Courier", "WC-1", monitor, at, PASSWORD, UTC_TZ))


def receive(trial: Trial, code: str, max_temp: float | None = -80.0, box: str = SITE_BOX,
            at: datetime = RECEIPT) -> Shipment:
    with freeze_time(at):
        return trial.act("pharm.wang", lambda s, a: shipments.receive_shipment(
            s, a, code, [box], at, max_temp, PASSWORD, UTC_TZ))


def confirm(trial: Trial, code: str, scans: list[str], substitute: str | None = None,
            user: str = "pharm.wang") -> shipments.ConfirmReport:
    with freeze_time(LATER):
        return trial.act(user, lambda s, a: shipments.confirm_scans(
            s, a, code, scans, PASSWORD, substitute, UTC_TZ))


def release(trial: Trial, code: str, user: str = "qa.lee") -> Shipment:
    with freeze_time(LATER):
        return trial.act(user, lambda s, a: shipments.release_quarantine(
            s, a, code, "excursion assessed against stability data", PASSWORD))


def report_lost(trial: Trial, code: str) -> Shipment:
    with freeze_time(LATER):
        return trial.act("pharm.chen", lambda s, a: shipments.report_lost(
            s, a, code, "courier lost the parcel", PASSWORD))


def cancel(trial: Trial, code: str) -> Shipment:
    with freeze_time(LATER):
        return trial.act("pharm.chen", lambda s, a: shipments.cancel_shipment(
            s, a, code, "visit postponed"))


def status_of(trial: Trial, code: str) -> str:
    with db.unit_of_work(trial.database.engine) as session:
        return shipments.get_shipment(session, code).status


def vial_state(trial: Trial, serial: str) -> tuple[str, str | None]:
    with db.unit_of_work(trial.database.engine) as session:
        vial = session.execute(select(Vial).where(Vial.serial == serial)).scalar_one()
        return vial.status, vial.location.path if vial.location else None


def head(trial: Trial) -> tuple[int, str]:
    with db.unit_of_work(trial.database.engine) as session:
        return audit.head(session)


def gs1_scan(trial: Trial, serial: str, lot_number: str | None = None) -> str:
    with db.unit_of_work(trial.database.engine) as session:
        vial = session.execute(select(Vial).where(Vial.serial == serial)).scalar_one()
        fields = [("01", vial.lot.product.gtin), ("10", lot_number or vial.lot.lot_number),
                  ("17", gs1.yymmdd(vial.lot.expiry_on)), ("21", serial)]
        return "]d2" + gs1.element_string(fields, "<GS>")


# --- the whole journey ---------------------------------------------------------------------

def test_vials_travel_with_their_shipment_and_are_dispensable_only_once_scanned(trial):
    number = depot_lot(trial, vials=3)
    serials = trial.serials(number)
    code = create(trial, picks=[(number, 2)])
    assert status_of(trial, code) == "prepared"
    assert vial_state(trial, serials[0]) == ("in_stock", DEPOT_BOX)
    dispatch(trial, code)
    assert status_of(trial, code) == "in_transit"
    assert vial_state(trial, serials[0]) == ("in_transit", None)
    assert vial_state(trial, serials[2]) == ("in_stock", DEPOT_BOX)  # not picked
    trial.enroll_and_operate("S-001", "LOW", T0)
    with pytest.raises(RuleViolation, match="the vial is in transit"):
        trial.dispense("S-001", [serials[0]], T0 + timedelta(hours=24))
    receive(trial, code)
    assert status_of(trial, code) == "received"
    assert vial_state(trial, serials[0]) == ("unconfirmed", SITE_BOX)
    with pytest.raises(RuleViolation, match="its label has not been scanned"):
        trial.dispense("S-001", [serials[0]], T0 + timedelta(hours=24))
    report = confirm(trial, code, [gs1_scan(trial, serials[0])], substitute="<GS>")
    assert [(a.answer, a.serial) for a in report.answers] == [("confirmed", serials[0])]
    assert (report.confirmed, report.remaining, report.total) == (1, 1, 2)
    assert vial_state(trial, serials[0]) == ("in_stock", SITE_BOX)
    dose = trial.dispense("S-001", [serials[0]], T0 + timedelta(hours=24))
    assert dose.dose_code == "D000001"
    with db.unit_of_work(trial.database.engine) as session:
        assert trial.signature_meanings(session, "shipment", code) == {
            ("shipment issued", "Pharm Chen"), ("shipment received", "Pharm Wang"),
            ("receipt confirmed by scan", "Pharm Wang")}
        assert audit.verify(session).ok
        detail = shipments.shipment_detail(session, trial.user(session, "monitor.sun"), code,
                                           UTC_TZ)
        assert (detail["confirmed"], detail["remaining"]) == (1, 1)


def test_a_direct_receipt_without_a_shipment_still_gives_usable_vials(trial):
    serial = trial.vial()
    trial.enroll_and_operate("S-001", "LOW", T0)
    assert trial.dispense("S-001", [serial], T0 + timedelta(hours=24)).status == "dispensed"


# --- every state against every action --------------------------------------------------------

ACTIONS = ("dispatch", "receive", "confirm", "release", "lost", "cancel")
ALLOWED = {("prepared", "dispatch"): "in_transit", ("prepared", "cancel"): "cancelled",
           ("in_transit", "receive"): "received", ("in_transit", "lost"): "lost",
           ("received", "confirm"): "received", ("quarantined", "confirm"): "quarantined",
           ("quarantined", "release"): "received"}


def shipment_in(trial: Trial, state: str, serial: str) -> str:
    code = create(trial, serials=[serial])
    if state == "cancelled":
        cancel(trial, code)
    if state in ("in_transit", "received", "quarantined", "lost"):
        dispatch(trial, code)
    if state == "received":
        receive(trial, code)
    if state == "quarantined":
        receive(trial, code, max_temp=None)
    if state == "lost":
        report_lost(trial, code)
    assert status_of(trial, code) == state
    return code


def act(trial: Trial, action: str, code: str, serial: str) -> None:
    {"dispatch": lambda: dispatch(trial, code, at=LATER),
     "receive": lambda: receive(trial, code, at=LATER),
     "confirm": lambda: confirm(trial, code, [serial]),
     "release": lambda: release(trial, code),
     "lost": lambda: report_lost(trial, code),
     "cancel": lambda: cancel(trial, code)}[action]()


@pytest.mark.parametrize("state", ["prepared", "in_transit", "received", "quarantined", "lost",
                                   "cancelled"])
def test_each_state_allows_its_transitions_and_refuses_every_other_changing_nothing(trial, state):
    pool = trial.serials(depot_lot(trial, vials=len(ACTIONS) + 1))
    for action, serial in zip(ACTIONS, pool, strict=False):
        code = shipment_in(trial, state, serial)
        expected = ALLOWED.get((state, action))
        before = head(trial)
        if expected is None:
            with pytest.raises(RuleViolation, match=f"shipment {code}"):
                act(trial, action, code, serial)
            assert head(trial) == before, (state, action)
            assert status_of(trial, code) == state
        else:
            act(trial, action, code, serial)
            assert status_of(trial, code) == expected, (state, action)
            assert head(trial) != before


def test_a_lost_shipment_loses_its_vials_and_cannot_be_received(trial):
    serial = trial.serials(depot_lot(trial, vials=1))[0]
    code = shipment_in(trial, "lost", serial)
    assert vial_state(trial, serial) == ("lost", None)
    before = head(trial)
    with pytest.raises(RuleViolation, match=re.escape("was reported lost (courier lost the "
                                                      "parcel): it cannot be received")):
        receive(trial, code, at=LATER)
    assert head(trial) == before
    with db.unit_of_work(trial.database.engine) as session:
        assert ("shipment reported lost", "Pharm Chen") in trial.signature_meanings(
            session, "shipment", code)


def test_a_cancelled_shipment_leaves_its_vials_where_they_were_and_free_to_ship(trial):
    serial = trial.serials(depot_lot(trial, vials=1))[0]
    shipment_in(trial, "cancelled", serial)
    assert vial_state(trial, serial) == ("in_stock", DEPOT_BOX)
    assert status_of(trial, create(trial, serials=[serial])) == "prepared"


# --- bad input: a clear answer, nothing changed ---------------------------------------------

def test_shipping_refuses_unreleased_held_or_busy_vials_naming_each(trial):
    quarantined = depot_lot(trial, vials=2, release=False)
    held = depot_lot(trial, vials=2)
    trial.transition(held, "on_hold")
    good = depot_lot(trial, vials=3)
    serials = trial.serials(good)
    create(trial, serials=[serials[0]])
    warm = "DEPOT/FRZ-2/R1/BOX-1"
    trial.act("pharm.chen", lambda s, a: storage.add_location(s, a, warm, 10))
    warmed = trial.serials(depot_lot(trial, vials=1))[0]
    with freeze_time(NOW - timedelta(hours=4)):  # in the box before the excursion began
        trial.act("pharm.chen", lambda s, a: storage.move_vial(s, a, warmed, warm, None))
    with freeze_time(NOW):
        trial.act("pharm.chen", lambda s, a: storage.record_excursion(
            s, a, warm, NOW - timedelta(hours=3), NOW - timedelta(hours=2), -50, None))
    cases = [
        (dict(picks=[(quarantined, 1)]), f"lot {quarantined} is quarantine: only released lots"),
        (dict(picks=[(held, None)]), f"lot {held} is on hold"),
        (dict(serials=[warmed]), "the vial is on hold after a temperature excursion"),
        (dict(serials=[serials[0]]), "it is already in shipment SH000001 (prepared)"),
        (dict(picks=[(good, 5)]), f"only 2 vial(s) of lot {good} can be shipped from DEPOT (in "
                                  "stock there, not on hold, in no other shipment); 5 asked"),
        (dict(serials=[trial.vial()]), "it is not stored at DEPOT but at SITE/FRZ-A/R1/BOX-1"),
        (dict(serials=[serials[2]], site=SITE_BOX), "a shipment goes to a site"),
        (dict(serials=[serials[2]], origin="SITE/FRZ-A", site="SITE"), "is already at SITE"),
        (dict(), "give the vials to ship"),
        (dict(serials=[serials[2], serials[2]]), "is given twice"),
    ]
    for kwargs, message in cases:
        before = head(trial)
        with pytest.raises(LotrackError, match=re.escape(message)):
            create(trial, **kwargs)
        assert head(trial) == before, message


def test_a_receipt_at_the_wrong_site_is_refused_and_changes_nothing(trial):
    code = create(trial, picks=[(depot_lot(trial, vials=2), None)])
    dispatch(trial, code)
    before = head(trial)
    with pytest.raises(RuleViolation, match=f"{OTHER_BOX} is not at SITE: shipment {code} is "
                                            "addressed to SITE"):
        receive(trial, code, box=OTHER_BOX)
    assert head(trial) == before and status_of(trial, code) == "in_transit"


def test_only_a_pharmacist_or_qa_ships_and_only_qa_releases_a_quarantine(trial):
    serial = trial.serials(depot_lot(trial, vials=1))[0]
    with pytest.raises(PermissionDenied, match="needs the pharmacist or qa role"):
        create(trial, serials=[serial], user="inv.liu")
    code = shipment_in(trial, "quarantined", serial)
    with pytest.raises(PermissionDenied, match="needs the qa role"):
        release(trial, code, user="pharm.chen")


def test_a_lot_with_vials_in_transit_cannot_be_destroyed(trial):
    number = depot_lot(trial, vials=2)
    dispatch(trial, create(trial, picks=[(number, 1)]))
    with pytest.raises(RuleViolation, match="has 1 vial\\(s\\) in transit"):
        trial.act("qa.lee", lambda s, a: lots.transition(
            s, a, number, "destroyed", "x", PASSWORD, UTC_TZ, witness=("qa.huang", PASSWORD),
            quantity=1))


# --- scanning to confirm ---------------------------------------------------------------------

def test_every_scan_gets_its_answer_and_only_new_confirmations_change_anything(trial):
    number = depot_lot(trial, vials=5)
    serials = trial.serials(number)
    code = create(trial, serials=serials[:3])
    other = create(trial, serials=[serials[3]])
    for shipment in (code, other):
        dispatch(trial, shipment)
        receive(trial, shipment)
    confirm(trial, code, [serials[0]])
    scans = [serials[1], serials[1], serials[0], serials[3], serials[4], "V00000019",
             "not-a-barcode", gs1_scan(trial, serials[2], lot_number="WRONG-LOT")]
    report = confirm(trial, code, scans, substitute="<GS>")
    answers = [(a.answer, a.serial) for a in report.answers]
    assert answers == [
        ("confirmed", serials[1]), ("already confirmed", serials[1]),
        ("already confirmed", serials[0]), ("not in this shipment", serials[3]),
        ("not in this shipment", serials[4]), ("unknown", None), ("unknown", None),
        ("mismatch", serials[2])]
    details = [a.detail for a in report.answers]
    assert details[1] == "scanned twice in this batch"
    assert f"it travelled in shipment {other} (received)" in details[3]
    assert "it is in no shipment" in details[4]
    assert "WRONG-LOT" in details[7]
    assert (report.confirmed, report.remaining) == (1, 1)
    assert len(report.refused) == 5
    before = head(trial)
    again = confirm(trial, code, [serials[0], serials[3]])
    assert [a.answer for a in again.answers] == ["already confirmed", "not in this shipment"]
    assert head(trial) == before  # nothing newly confirmed: nothing written, nothing signed


def test_confirming_needs_a_received_shipment(trial):
    serial = trial.serials(depot_lot(trial, vials=1))[0]
    code = shipment_in(trial, "in_transit", serial)
    with pytest.raises(RuleViolation, match="is in transit: receive it before confirming"):
        confirm(trial, code, [serial])
    with pytest.raises(InvalidInput, match="no scan given"):
        confirm(trial, code, ["", "  "])


# --- quarantine -------------------------------------------------------------------------------

@pytest.mark.parametrize(("monitor", "max_temp", "quarantined", "reason"), [
    ("TL-1", -70.0, False, None),  # at the storage limit exactly: within the condition
    ("TL-1", -69.9, True, "highest reading -69.9 C is above IPSEXO's storage limit -70 C"),
    ("TL-1", None, True, "no temperature monitor reading at receipt"),
    (None, -80.0, True, "no temperature monitor travelled with the shipment"),
])
def test_a_receipt_without_a_reading_or_outside_storage_is_quarantined(trial, monitor, max_temp,
                                                                      quarantined, reason):
    code = create(trial, picks=[(depot_lot(trial, vials=2), None)])
    dispatch(trial, code, monitor=monitor)
    done = receive(trial, code, max_temp=max_temp)
    assert done.status == ("quarantined" if quarantined else "received")
    if reason:
        assert reason in done.quarantine_reason


def test_a_quarantined_shipment_is_released_by_qa_and_scans_made_meanwhile_count(trial):
    number = depot_lot(trial, vials=2)
    first, second = trial.serials(number)
    code = create(trial, picks=[(number, None)])
    dispatch(trial, code)
    receive(trial, code, max_temp=-55.0)
    assert vial_state(trial, first)[0] == "quarantined"
    report = confirm(trial, code, [first])
    assert report.answers[0].answer == "confirmed"
    assert "quarantined: usable once QA releases it" in report.answers[0].detail
    assert vial_state(trial, first)[0] == "quarantined"
    trial.enroll_and_operate("S-001", "LOW", T0)
    with pytest.raises(RuleViolation, match="the vial is quarantined"):
        trial.dispense("S-001", [first], T0 + timedelta(hours=24))
    release(trial, code)
    assert status_of(trial, code) == "received"
    assert vial_state(trial, first)[0] == "in_stock"
    assert vial_state(trial, second)[0] == "unconfirmed"
    trial.dispense("S-001", [first], T0 + timedelta(hours=24))
    with db.unit_of_work(trial.database.engine) as session:
        assert ("QA release of quarantined shipment", "Qa Lee") in trial.signature_meanings(
            session, "shipment", code)
        assert audit.verify(session).ok


def test_a_lot_recalled_while_quarantined_keeps_its_vials_quarantined(trial):
    number = depot_lot(trial, vials=1)
    serial = trial.serials(number)[0]
    code = shipment_in(trial, "quarantined", serial)
    trial.transition(number, "recalled")
    release(trial, code)
    assert vial_state(trial, serial)[0] == "quarantined"


# --- offsets at their exact edges -------------------------------------------------------------

def offset_product(trial: Trial, code: str = "EXOOFF", dnd: int = 5, dns: int = 14) -> None:
    trial.act("qa.lee", lambda s, a: products.add_product(s, a, ProductIn(
        code=code, name="iPS-Exo with offsets", gtin="09506000134376",
        do_not_dispense_days=dnd, do_not_ship_days=dns)))
    spec = load_spec_file(shipped_spec_path("IPSEXO")).model_copy(update={"product": code})
    version = trial.act("qa.lee", lambda s, a: specifications.load_spec(s, a, spec, "offsets"))
    trial.act("qa.lee", lambda s, a: specifications.activate_spec(s, a, code, version.version,
                                                                  PASSWORD))


def timed_lot(trial: Trial, number: str, product: str, expiry: date, expiry_time: time | None,
              box: str = SITE_BOX, vials: int = 1) -> str:
    """A released lot expiring at a given time, received directly into `box`."""
    with freeze_time(NOW - timedelta(days=30)):
        trial.act("qa.lee", lambda s, a: lots.register_lot(s, a, LotIn(
            lot_number=number, product=product, manufactured_on=date(2026, 1, 10),
            expiry_on=expiry, expiry_time=expiry_time, vials=vials)))
        trial.act("qa.lee", lambda s, a: qc.record_results(s, a, lots.get_lot(s, number),
                                                           qc_rows(product)))
        trial.transition(number, "released")
        trial.act("pharm.chen", lambda s, a: storage.receive_lot(
            s, a, lots.get_lot(s, number), [box], NOW - timedelta(days=30)))
    return trial.serials(number)[0]


def problems_at(trial: Trial, serial: str, at: datetime, tz: ZoneInfo = UTC_TZ,
                kind: str = "dispensing") -> list[str]:
    with db.unit_of_work(trial.database.engine) as session:
        vial = session.execute(select(Vial).where(Vial.serial == serial)).scalar_one()
        rule = lots.dispensing_problems if kind == "dispensing" else lots.shipping_problems
        return rule(vial.lot, vial, at, tz)


def test_the_do_not_dispense_offset_holds_to_the_second_at_the_end_of_the_site_day(trial):
    offset_product(trial)
    shanghai = ZoneInfo("Asia/Shanghai")
    serial = timed_lot(trial, "OFF-1", "EXOOFF", date(2026, 6, 30), None)
    # Expiry is the end of 30 June in the site's time zone; 5 whole days must remain.
    cutoff = datetime(2026, 6, 25, 23, 59, 59, tzinfo=shanghai)
    assert problems_at(trial, serial, cutoff, shanghai) == []
    late = problems_at(trial, serial, cutoff + timedelta(seconds=1), shanghai)
    assert late == ["lot OFF-1 expires 2026-06-30 23:59 Asia/Shanghai, within the "
                    "do-not-dispense offset of 5 day(s) from the dispensing"]
    assert problems_at(trial, serial, cutoff, UTC_TZ) == []  # UTC day ends 8 hours later
    assert problems_at(trial, serial, cutoff + timedelta(hours=8)) == []
    assert problems_at(trial, serial, cutoff + timedelta(hours=8, seconds=1)) != []


def test_a_lot_expiry_with_a_time_of_day_is_used_instead_of_the_end_of_the_day(trial):
    offset_product(trial)
    serial = timed_lot(trial, "OFF-2", "EXOOFF", date(2026, 6, 30), time(12, 0))
    cutoff = datetime(2026, 6, 25, 12, 0, tzinfo=UTC)
    assert problems_at(trial, serial, cutoff) == []
    assert "expires 2026-06-30 12:00 UTC" in problems_at(trial, serial,
                                                         cutoff + timedelta(seconds=1))[0]
    with db.unit_of_work(trial.database.engine) as session:
        lot = lots.get_lot(session, "OFF-2")
        assert lots.effective_status(lot, datetime(2026, 6, 30, 12, 0, 1, tzinfo=UTC),
                                     UTC_TZ) == "expired"
        assert lots.effective_status(lot, datetime(2026, 6, 30, 12, 0, tzinfo=UTC),
                                     UTC_TZ) == "released"


def test_the_do_not_ship_offset_refuses_shipping_from_one_second_inside_it(trial):
    offset_product(trial)
    serial = timed_lot(trial, "OFF-3", "EXOOFF", date(2026, 5, 20), None, box=DEPOT_BOX)
    cutoff = datetime(2026, 5, 6, 23, 59, 59, tzinfo=UTC)  # 14 days before the end of 20 May
    assert problems_at(trial, serial, cutoff, kind="shipping") == []
    assert "do-not-ship offset of 14 day(s)" in problems_at(
        trial, serial, cutoff + timedelta(seconds=1), kind="shipping")[0]
    code = create(trial, serials=[serial], at=cutoff - timedelta(hours=1))
    before = head(trial)
    with pytest.raises(RuleViolation, match="do-not-ship offset of 14 day"):
        dispatch(trial, code, at=cutoff + timedelta(seconds=1))
    assert head(trial) == before
    dispatch(trial, code, at=cutoff)
    assert status_of(trial, code) == "in_transit"
    with pytest.raises(RuleViolation, match="do-not-ship offset"):
        create(trial, serials=[timed_lot(trial, "OFF-4", "EXOOFF", date(2026, 5, 20), None,
                                         box=DEPOT_BOX)], at=cutoff + timedelta(seconds=1))


def test_products_refuse_a_do_not_ship_offset_shorter_than_do_not_dispense():
    with pytest.raises(InvalidInput, match=re.escape("do-not-ship offset (3 days) must be at least")):
        parse(ProductIn, {"code": "X", "name": "X", "do_not_dispense_days": 5,
                          "do_not_ship_days": 3})


def test_the_protocol_can_count_the_offset_back_from_the_planned_last_perfusion(trial):
    offset_product(trial)
    low = [g.model_copy(update={"product": "EXOOFF"}) if g.code == "LOW" else g
           for g in PROTOCOL.groups]
    variant = PROTOCOL.model_copy(update={
        "groups": low, "supply": Supply(do_not_dispense_reference="last_perfusion")})
    version = trial.act("inv.liu", lambda s, a: protocols.load_protocol(s, a, variant, "v2"))
    trial.act("inv.liu", lambda s, a: protocols.activate_protocol(
        s, a, version.code, version.version, PASSWORD))
    last = T0 + timedelta(hours=PROTOCOL.cycle.perfusions[-1].target_hours)
    edge = last + timedelta(days=5)  # expires exactly 5 days after the planned last perfusion
    too_short = timed_lot(trial, "OFF-5", "EXOOFF", edge.date(),
                          (edge - timedelta(seconds=1)).time())
    just_enough = timed_lot(trial, "OFF-6", "EXOOFF", edge.date(), edge.time())
    trial.enroll_and_operate("S-001", "LOW", T0)
    at = T0 + timedelta(hours=24)
    with pytest.raises(RuleViolation, match="from the planned last perfusion of cycle 1 at "
                                            "2026-05-09 09:00"):
        trial.dispense("S-001", [too_short], at)
    assert problems_at(trial, too_short, at) == []  # counted from the dispensing: fine
    assert trial.dispense("S-001", [just_enough], at).status == "dispensed"


# --- first expiry first out -------------------------------------------------------------------

def test_fefo_proposes_the_confirmed_vials_at_the_site_that_expire_first(trial):
    offset_product(trial)
    late = timed_lot(trial, "F-LATE", "EXOOFF", date(2026, 12, 31), None, vials=2)
    early = timed_lot(trial, "F-EARLY", "EXOOFF", date(2026, 9, 30), None, vials=1)
    noon = timed_lot(trial, "F-NOON", "EXOOFF", date(2026, 9, 30), time(12, 0), vials=1)
    inside_dnd = timed_lot(trial, "F-DND", "EXOOFF", date(2026, 5, 8), None, vials=1)
    at_depot = timed_lot(trial, "F-DEPOT", "EXOOFF", date(2026, 7, 31), None, box=DEPOT_BOX)
    travelled = timed_lot(trial, "F-SHIP", "EXOOFF", date(2026, 8, 31), None, box=DEPOT_BOX)
    code = create(trial, serials=[travelled])
    dispatch(trial, code)
    receive(trial, code)  # unconfirmed: not proposed
    at = T0 + timedelta(hours=24)
    late_too = trial.serials("F-LATE")[1]
    with db.unit_of_work(trial.database.engine) as session:
        listed = [v.serial for v in stock.dispensable_stock(session, at, UTC_TZ, "EXOOFF", "SITE")]
        assert listed == [noon, early, late, late_too]
        everywhere = [v.lot for v in stock.dispensable_stock(session, at, UTC_TZ, "EXOOFF")]
        assert everywhere[:2] == ["F-DEPOT", "F-NOON"]
        assert inside_dnd not in listed and at_depot not in listed
        assert stock.pick_fefo(session, "EXOOFF", 2, at, UTC_TZ, site="SITE") == [noon, early]
    confirm(trial, code, [travelled])
    low = [g.model_copy(update={"product": "EXOOFF"}) if g.code == "LOW" else g
           for g in PROTOCOL.groups]
    version = trial.act("inv.liu", lambda s, a: protocols.load_protocol(
        s, a, PROTOCOL.model_copy(update={"groups": low}), "v2"))
    trial.act("inv.liu", lambda s, a: protocols.activate_protocol(
        s, a, version.code, version.version, PASSWORD))
    trial.enroll_and_operate("S-001", "LOW", T0)
    proposal = trial.act("pharm.chen", lambda s, a: dosing.propose_vials(
        s, a, "S-001", at, "SITE", UTC_TZ))
    # Once scanned, the vial that travelled is stock, and it expires first.
    assert proposal["proposed"] == [{"serial": travelled, "lot": "F-SHIP",
                                     "expiry": "2026-08-31 23:59 UTC", "location": SITE_BOX,
                                     "position": 6}]
    assert (proposal["cycle"], proposal["perfusion"], proposal["vials_needed"]) == (1, 1, 1)
    with pytest.raises(InvalidInput, match="EXOOFF can be dispensed at DEPOT, SITE: give --site"):
        trial.act("pharm.chen", lambda s, a: dosing.propose_vials(s, a, "S-001", at, None,
                                                                  UTC_TZ))


# --- QC alert limits --------------------------------------------------------------------------

def alert_spec(**size) -> SpecFile:
    spec = load_spec_file(shipped_spec_path("IPSEXO"))
    attributes = [a.model_copy(update=size) if a.name == "modal_particle_size" else a
                  for a in spec.attributes]
    return parse(SpecFile, {**spec.model_dump(), "attributes": [a.model_dump() for a in attributes]})


@pytest.mark.parametrize(("limits", "message"), [
    ({"alert_min": 50}, "alert_min 50 must be above min 50"),
    ({"alert_max": 210}, "alert_max 210 must be below max 200"),
    ({"alert_min": 150, "alert_max": 120}, "alert_min is above alert_max"),
    ({"alert_max": float("inf")}, "limits must be finite"),
])
def test_alert_limits_must_lie_inside_the_specification_limits(limits, message):
    with pytest.raises(InvalidInput, match=message):
        alert_spec(**limits)
    with pytest.raises(InvalidInput, match="alert limits need numeric specification limits"):
        parse(SpecFile, {"product": "X", "attributes": [{
            "name": "cd63", "label": "CD63", "unit": "result", "method": "WB",
            "expected": "positive", "alert_max": 1}]})


@pytest.mark.parametrize(("value", "verdict", "alert"), [
    ("180", "pass", None),  # on the alert limit: inside
    ("180.1", "pass", "180.1 is above the alert limit 180 (specification 50 - 200)"),
    ("200", "pass", "200 is above the alert limit 180 (specification 50 - 200)"),
    ("200.1", "fail", None),  # out of specification: a failure, not an alert
    ("59.9", "pass", "59.9 is below the alert limit 60 (specification 50 - 200)"),
    ("60", "pass", None),
])
def test_a_result_between_alert_and_specification_limits_passes_and_is_flagged(value, verdict,
                                                                               alert):
    attr = alert_spec(alert_min=60, alert_max=180).attribute("modal_particle_size")
    judged = qc.evaluate(attr, value)
    assert judged.verdict == verdict
    assert qc.alert_of(attr, value, judged.verdict) == alert
    assert ("ALERT" in judged.detail) == (alert is not None)


def test_an_alert_is_flagged_on_the_lot_the_coa_and_the_consistency_report(trial):
    spec = alert_spec(alert_min=60, alert_max=150)
    version = trial.act("qa.lee", lambda s, a: specifications.load_spec(s, a, spec, "alerts"))
    trial.act("qa.lee", lambda s, a: specifications.activate_spec(s, a, "IPSEXO",
                                                                  version.version, PASSWORD))
    flagged = trial.lot(overrides={"modal_particle_size": "170"})  # released: it passes
    trial.lot(overrides={"modal_particle_size": "120"})
    with db.unit_of_work(trial.database.engine) as session:
        reader = trial.user(session, "monitor.sun")
        detail = lot_views.lot_detail(session, reader, flagged, None, UTC_TZ)
        assert detail["status"] == "released"
        assert detail["qc_alerts"] == ["modal_particle_size: 170 is above the alert limit 150 "
                                       "(specification 50 - 200)"]
        size = next(r for r in detail["results"] if r["attribute"] == "modal_particle_size")
        assert (size["verdict"], size["alert"] is not None) == ("pass", True)
        coa = documents.certificate_of_analysis(session, reader, flagged, None, UTC_TZ)
        row = next(r for r in coa["results"] if r["name"] == "modal_particle_size")
        assert coa["conforms"] and row["alert_limits"] == "60 - 150"
        report = consistency.consistency_report(session, reader, "IPSEXO", site_tz=UTC_TZ)
        alerts = [f for f in report["flags"] if f["kind"] == "ALERT"]
        assert [(f["lot"], f["attribute"]) for f in alerts] == [(flagged, "modal_particle_size")]
        assert report["summary"]["alert"] == 1


def test_offsets_and_expiry_times_stay_out_of_the_audited_state_of_records_without_them(trial):
    number = trial.lot()
    with db.unit_of_work(trial.database.engine) as session:
        product = session.execute(select(Product).where(Product.code == "IPSEXO")).scalar_one()
        assert "do_not_dispense_days" not in product.audit_state()
        lot = lots.get_lot(session, number)
        assert "expiry_time" not in lot.audit_state()
        assert audit.verify(session).ok
