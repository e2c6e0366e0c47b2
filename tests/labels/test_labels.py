"""Labels read back with a real decoder (zxing-cpp), parsed with biip, compared with the
database; their text read with a PDF text extractor. On SQLite and PostgreSQL."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import timedelta
from pathlib import Path

import pytest
from PIL import Image
from readback import decode_image, decode_labels, decode_pdf, gs1_fields, pdf_text
from sqlalchemy import func, select
from trialkit import T0, UTC_TZ, Trial

from lotrack import db
from lotrack.errors import InvalidInput, PermissionDenied, RuleViolation
from lotrack.models import AuditEvent, LabelPrint, Lot, Vial
from lotrack.render.labels.layout import layout
from lotrack.render.labels.output import stage_labels
from lotrack.services import labels as service

GTIN = "09506000134352"


def print_labels(trial: Trial, kind: str, gather, out: Path, *, user: str = "pharm.chen",
                 template: str | None = None, sheet: str | None = None, fmt: str = "pdf",
                 copies: int = 1, reason: str | None = None) -> list:
    """What `lotrack label ...` does: record the prints, lay out, write, in one transaction."""
    tmpl = service.load_template(template, kind)

    def action(session, actor):
        printed = service.record_prints(session, actor, kind, gather(session), tmpl, fmt, copies,
                                        reason)
        staged = stage_labels(out, fmt, [layout(tmpl, p) for p in printed], copies, tmpl,
                              tmpl.sheet_named(sheet), "test")
        return printed, staged

    printed, staged = trial.act(user, action)
    staged.commit()
    return printed


def lot_facts(trial: Trial, number: str) -> tuple[str, set[str]]:
    with db.unit_of_work(trial.database.engine) as session:
        lot = session.execute(select(Lot).where(Lot.lot_number == number)).scalar_one()
        serials = set(session.execute(select(Vial.serial).where(Vial.lot_id == lot.id)).scalars())
        return lot.expiry_on.strftime("%y%m%d"), serials


def prints(trial: Trial) -> list[tuple[str, str, int, str | None]]:
    with db.unit_of_work(trial.database.engine) as session:
        return [tuple(r) for r in session.execute(select(
            LabelPrint.kind, LabelPrint.subject, LabelPrint.print_number, LabelPrint.reason)
            .order_by(LabelPrint.id)).all()]


@pytest.mark.parametrize("sheet", ["a4", "letter", None])
def test_every_vial_label_on_a_sheet_scans_back_as_the_database_says(trial, tmp_path, sheet):
    number = trial.lot(vials=10)
    out = tmp_path / "vials.pdf"
    print_labels(trial, "vial", lambda s: service.vial_labels(s, number, None, ()), out,
                 sheet=sheet)
    expiry, serials = lot_facts(trial, number)

    decoded = decode_labels(out, "vial", sheet)
    assert len(decoded) == 10  # each label on its own: one symbol each
    seen = set()
    for [(symbology, raw)] in decoded:
        assert symbology == "]d2"  # GS1 DataMatrix
        fields = gs1_fields(symbology, raw)
        assert (fields["01"], fields["10"], fields["17"]) == (GTIN, number, expiry)
        seen.add(fields["21"])
    assert seen == serials

    text = "\n".join(pdf_text(out))
    for serial in serials:
        assert f"SN {serial}" in text
    assert f"LOT {number}" in text and "For clinical trial use only" in text
    assert "IPSEXO-IUA-01" in text and "Store at or below -70 C" in text


def test_a_product_without_gtin_gets_a_code_128_of_the_serial(trial, tmp_path):
    number = trial.lot("PLACEBO", vials=3)
    out = tmp_path / "placebo.pdf"
    print_labels(trial, "vial", lambda s: service.vial_labels(s, number, None, ()), out)
    _, serials = lot_facts(trial, number)
    pages = decode_pdf(out)
    assert len(pages) == 3  # a roll: one label per page
    for page in pages:
        code128 = [raw for sym, raw in page if sym == "]C0"]
        assert len(code128) == 1 and code128[0] in serials
        assert not any(sym in ("]C1", "]d2") for sym, _ in page)  # no GS1 without a GTIN
    # A reprint fits its mark beside the small symbol, up to the ninth and beyond.
    first = sorted(serials)[0]
    for copy in range(2, 11):
        again = tmp_path / f"placebo-{copy}.pdf"
        print_labels(trial, "vial", lambda s: service.vial_labels(s, number, None, [first]),
                     again, reason="label smudged")
        assert f"REPRINT {copy}" in pdf_text(again)[0]


def test_png_svg_and_zpl_carry_the_same_content(trial, tmp_path):
    number = trial.lot(vials=2)
    expiry, serials = lot_facts(trial, number)
    gather = lambda s: service.vial_labels(s, number, None, ())  # noqa: E731
    print_labels(trial, "vial", gather, tmp_path / "png", fmt="png")
    for path in sorted((tmp_path / "png").glob("*.png")):
        [(symbology, raw)] = decode_image(Image.open(path))
        assert gs1_fields(symbology, raw)["21"] == path.stem and path.stem in serials

    print_labels(trial, "vial", gather, tmp_path / "svg", fmt="svg", reason="SVG for the LIMS")
    for path in sorted((tmp_path / "svg").glob("*.svg")):
        root = ET.parse(path).getroot()
        assert root.get("width") == "38mm" and root.get("height") == "13mm"
        contents = [g.get("data-content") for g in root.iter("{http://www.w3.org/2000/svg}g")
                    if g.get("data-content")]
        assert contents == [f"(01){GTIN}(10){number}(17){expiry}(21){path.stem}"]

    zpl = tmp_path / "labels.zpl"
    print_labels(trial, "vial", gather, zpl, fmt="zpl", copies=2, reason="ZPL for the roll printer")
    text = zpl.read_text()
    assert text.count("^XA") == 4 and text.count("^XZ") == 4  # 2 labels x 2 copies
    for serial in serials:
        assert f"^FD_101{GTIN}10{number}_117{expiry}21{serial}^FS" in text


def test_a_reprint_needs_a_reason_is_counted_marked_and_audited(trial, tmp_path):
    number = trial.lot(vials=2)
    serial = trial.serials(number)[0]
    gather = lambda s: service.vial_labels(s, number, None, [serial])  # noqa: E731
    print_labels(trial, "vial", gather, tmp_path / "first.pdf")
    assert "REPRINT" not in pdf_text(tmp_path / "first.pdf")[0]

    with pytest.raises(RuleViolation, match=f"{serial} was printed before: give --reason"):
        print_labels(trial, "vial", gather, tmp_path / "second.pdf")
    assert not (tmp_path / "second.pdf").exists()
    assert prints(trial) == [("vial", serial, 1, None)]

    print_labels(trial, "vial", gather, tmp_path / "second.pdf", reason="label torn at thaw")
    assert "REPRINT 2" in pdf_text(tmp_path / "second.pdf")[0]
    assert prints(trial)[-1] == ("vial", serial, 2, "label torn at thaw")
    with db.unit_of_work(trial.database.engine) as session:
        event = session.execute(select(AuditEvent).where(AuditEvent.entity == "label_print")
                                .order_by(AuditEvent.seq.desc())).scalars().first()
        assert (event.action, event.reason, event.entity_id) == (
            "reprint", "label torn at thaw", f"vial:{serial}#2")


def test_box_label_counts_the_vials_of_its_lot(trial, tmp_path):
    number = trial.lot(vials=5)
    expiry, _ = lot_facts(trial, number)
    out = tmp_path / "box.pdf"
    print_labels(trial, "box", lambda s: service.box_labels(s, ["SITE/FRZ-A/R1/BOX-1"]), out)
    [[(symbology, raw)]] = decode_pdf(out)
    assert symbology == "]C1"  # GS1-128
    assert gs1_fields(symbology, raw) == {"01": GTIN, "10": number, "17": expiry, "30": "5"}
    assert "Box SITE/FRZ-A/R1/BOX-1" in pdf_text(out)[0]

    trial.lot(vials=2)  # a second lot in the box: no single (10), so a Code 128 of the box
    print_labels(trial, "box", lambda s: service.box_labels(s, ["SITE/FRZ-A/R1/BOX-1"]),
                 tmp_path / "box2.pdf", reason="second lot received")
    [[(symbology, raw)]] = decode_pdf(tmp_path / "box2.pdf")
    assert (symbology, raw) == ("]C0", "SITE/FRZ-A/R1/BOX-1")


def test_dose_label_carries_dose_participant_perfusion_and_use_by(trial, tmp_path):
    trial.enroll_and_operate("S-001", "LOW", T0)
    dose = trial.dispense("S-001", [trial.vial()], T0 + timedelta(hours=24))
    out = tmp_path / "dose.pdf"
    print_labels(trial, "dose", lambda s: service.dose_labels(s, [dose.dose_code], UTC_TZ), out)
    [[(symbology, raw)]] = decode_pdf(out)
    fields = gs1_fields(symbology, raw)
    assert fields == {"01": GTIN, "7003": dose.use_by.astimezone(UTC_TZ).strftime("%y%m%d%H%M"),
                      "21": dose.dose_code}
    text = pdf_text(out)[0]
    assert f"Dose {dose.dose_code}" in text and "Participant S-001" in text
    assert "cycle 1, perfusion 1" in text and "Dispensed 2026-05-05 09:00" in text
    assert "USE BY 2026-05-05 11:00" in text


def test_labels_refused_for_a_rejected_lot_a_foreign_serial_or_a_non_printer(trial, tmp_path):
    rejected = trial.lot(release=False, receive=False)
    trial.transition(rejected, "rejected")
    with pytest.raises(RuleViolation, match="is rejected: its vials get no labels"):
        print_labels(trial, "vial", lambda s: service.vial_labels(s, rejected, None, ()),
                     tmp_path / "x.pdf")
    other = trial.lot(vials=1)
    foreign = trial.serials(trial.lot(vials=1))[0]
    with pytest.raises(InvalidInput, match=f"{foreign} is not of lot {other}"):
        print_labels(trial, "vial", lambda s: service.vial_labels(s, other, None, [foreign]),
                     tmp_path / "x.pdf")
    with pytest.raises(PermissionDenied, match="printing labels needs the pharmacist or qa role"):
        print_labels(trial, "vial", lambda s: service.vial_labels(s, other, None, ()),
                     tmp_path / "x.pdf", user="inv.liu")
    assert prints(trial) == [] and not list(tmp_path.glob("*.pdf"))


def test_text_that_does_not_fit_refuses_the_whole_print(trial, tmp_path):
    number = trial.lot(vials=2)
    template = (Path(service.templates_dir()) / "cryovial.toml").read_text()
    narrow = tmp_path / "narrow.toml"
    narrow.write_text(template.replace('name = "cryovial"', 'name = "narrow"')
                      .replace('width_mm = 26\nsize_pt = 5.5\nbold = true\ntext = "LOT',
                               'width_mm = 8\nsize_pt = 5.5\nbold = true\ntext = "LOT'))
    with pytest.raises(InvalidInput, match=r"needs .* mm at 3.5 pt but the template gives 8 mm"):
        print_labels(trial, "vial", lambda s: service.vial_labels(s, number, None, ()),
                     tmp_path / "x.pdf", template=str(narrow))
    assert prints(trial) == [] and not (tmp_path / "x.pdf").exists()
    with db.unit_of_work(trial.database.engine) as session:
        assert session.execute(select(func.count()).select_from(LabelPrint)).scalar_one() == 0
