"""Labels and scans from the command line: print, decode what was printed, scan it back,
dispense by scan; bad input leaves the audit trail unchanged."""

import json
from pathlib import Path

import biip
import pypdfium2 as pdfium
import pytest
import zxingcpp
from pypdf import PdfReader
from test_trial_cli import ANSWERS, set_up_site

from lotrack.services.vials import make_serial

GTIN = "09506000134352"


def decode(path: Path) -> list[tuple[str, str]]:
    codes = []
    for page in pdfium.PdfDocument(str(path)):
        image = page.render(scale=8).to_pil()
        codes += [(r.symbology_identifier, r.text)
                  for r in zxingcpp.read_barcodes(image, text_mode=zxingcpp.TextMode.Plain)]
    return codes


def enrol_and_operate(lotrack, subject: str) -> None:
    inv = {"user": "inv.liu"}
    lotrack.ok("participant", "enroll", subject, "--group", "LOW", "--consented", "2026-03-01",
               "--sex", "F", "--birth-date", "1992-04-01", "--iua-score", "14", "--amh", "2.0",
               "--platelets", "210", "--aptt", "1.0", "--hba1c", "5.2", *ANSWERS, **inv)
    lotrack.ok("surgery", "record", subject, "--at", "2026-03-05T09:00", **inv)


@pytest.mark.slow
def test_print_with_the_installed_script_then_scan_each_label_back(lotrack, tmp_path):
    set_up_site(lotrack, tmp_path)
    out = tmp_path / "vials.pdf"
    done = lotrack.script("label", "vials", "EXO-01", "--sheet", "roll", "--out", str(out),
                          user="pharm.chen")
    assert done.exit_code == 0, done.stderr
    assert "Wrote 6 vial label(s) x 1 (cryovial, pdf)" in done.stdout
    codes = decode(out)
    assert len(codes) == 6
    symbology, raw = codes[0]
    fields = {e.ai.ai: e.value for e in biip.parse(symbology + raw).gs1_message.element_strings}
    assert (fields["01"], fields["10"], fields["17"]) == (GTIN, "EXO-01", "261231")

    # The scanner sends the separator as "<GS>" at this site.
    typed = symbology + raw.replace("\x1d", "<GS>")
    shown = lotrack.script("scan", typed, "--json", user="monitor.sun",
                           LOTRACK_GS_SUBSTITUTE="<GS>")
    assert shown.exit_code == 0, shown.stderr
    report = json.loads(shown.stdout)
    assert (report["kind"], report["subject"], report["agrees"]) == ("vial", fields["21"], True)
    assert report["database"]["lot"] == "EXO-01"

    forged = typed.replace("10EXO-01", "10EXO-99")
    shown = lotrack.script("scan", forged, user="monitor.sun", LOTRACK_GS_SUBSTITUTE="<GS>")
    assert shown.exit_code == 1 and "DISAGREES with the database" in shown.stdout
    assert shown.stderr.strip() == (f"Error: the label's lot EXO-99 is not vial {fields['21']}'s "
                                    "lot EXO-01")


def test_dispense_by_scan_writes_the_dose_label(lotrack, tmp_path):
    set_up_site(lotrack, tmp_path)
    enrol_and_operate(lotrack, "S-001")
    lotrack.ok("label", "vials", "EXO-01", "--out", str(tmp_path / "vials.pdf"), user="pharm.chen")
    symbology, raw = decode(tmp_path / "vials.pdf")[0]
    label = tmp_path / "dose.pdf"
    out = lotrack.ok("dispense", "S-001", "--scan", symbology + raw, "--at", "2026-03-06T09:30",
                     "--verified-by", "pharm.wang", "--label", str(label), user="pharm.chen")
    assert "Dose D000001: perfusion 1" in out and f"Dose label: {label}" in out
    [(dose_symbology, dose_raw)] = decode(label)
    parsed = biip.parse(dose_symbology + dose_raw).gs1_message
    assert {e.ai.ai: e.value for e in parsed.element_strings} == {
        "01": GTIN, "7003": "2603061130", "21": "D000001"}  # use-by: 2 h after dispensing
    text = PdfReader(label).pages[0].extract_text()
    assert "Participant S-001" in text and "USE BY 2026-03-06 11:30 UTC" in text
    log = json.loads(lotrack.ok("audit", "log", "--json", "--limit", "1000", user="monitor.sun"))
    assert {(e["entity"], e["id"], e["action"], e["user"]) for e in log if e["entity"] == "label_print"} \
        == {("label_print", "dose:D000001#1", "print", "pharm.chen"),
            *(("label_print", f"vial:{s}#1", "print", "pharm.chen") for s in serials(lotrack))}


def test_dispense_default_label_path_and_no_label(lotrack, tmp_path):
    set_up_site(lotrack, tmp_path)
    enrol_and_operate(lotrack, "S-001")
    serials = [v["serial"] for v in json.loads(lotrack.ok("vial", "list", "--lot", "EXO-01",
                                                          "--json"))]
    lotrack.ok("dispense", "S-001", "--vial", serials[0], "--at", "2026-03-06T09:30",
               "--verified-by", "pharm.wang", user="pharm.chen")
    assert (lotrack.workdir / "dose-labels" / "D000001.pdf").is_file()


@pytest.mark.parametrize(("args", "user", "message"), [
    (["label", "vials", "EXO-01", "--template", "nope", "--out", "x.pdf"], "pharm.chen",
     "Error: no label template 'nope'"),
    (["label", "vials", "EXO-01", "--template", "dose", "--out", "x.pdf"], "pharm.chen",
     "is for dose labels, not vial labels"),
    (["label", "vials", "EXO-01", "--sheet", "a3", "--out", "x.pdf"], "pharm.chen",
     "has no sheet 'a3'"),
    (["label", "vials", "EXO-01", "--out", "x.txt"], "pharm.chen", "give --format"),
    (["label", "vials", "EXO-01", "--serial", "V00000010", "--out", "x.pdf"], "pharm.chen",
     "wrong check character"),
    (["label", "vials", "EXO-01", "--out", "x.pdf"], "inv.liu", "needs the pharmacist or qa role"),
    (["label", "box", "SITE/NOWHERE", "--out", "x.pdf"], "pharm.chen", "SITE/NOWHERE"),
    (["label", "dose", "D000999", "--out", "x.pdf"], "pharm.chen", "no dose 'D000999'"),
    (["label", "vials", "EXO-01", "--copies", "0", "--out", "x.pdf"], "pharm.chen",
     "--copies must be 1 to 100"),
    (["scan", "]C10109506000134353"], "pharm.chen", "check digit"),
    (["scan", "]C1010950600013435210EXO-01\x1d2399X"], "pharm.chen", "Application Identifier"),
    (["scan", "]C1010950600013"], "pharm.chen", "(01)"),
    (["scan", "NOTHING-KNOWN"], "pharm.chen", "no vial serial, dose id, storage location"),
    (["dispense", "S-001", "--scan", "]d2010950600013435210EXO-02\x1d1726123121" + make_serial(1),
      "--verified-by", "pharm.wang", "--at", "2026-03-06T09:30"], "pharm.chen",
     "disagrees with the database"),
])
def test_bad_label_and_scan_input_changes_nothing(lotrack, tmp_path, args, user, message):
    set_up_site(lotrack, tmp_path)
    enrol_and_operate(lotrack, "S-001")
    lotrack.refuses(*args, user=user, message=message)
    assert not list(lotrack.workdir.rglob("*.pdf"))


def serials(lotrack) -> list[str]:
    return [v["serial"] for v in json.loads(lotrack.ok("vial", "list", "--lot", "EXO-01", "--json"))]
