"""Site supply from the command line: a shipment from the depot to the site, receipt
confirmed by scanning (options and a keyboard-wedge scanner on stdin), quarantine, FEFO
proposals, the manifest PDF read back and its barcode decoded, and bad input."""

import json
from pathlib import Path

import pypdfium2 as pdfium
import pytest
import zxingcpp
from freezegun import freeze_time
from pypdf import PdfReader
from test_trial_cli import ANSWERS, RESULTS, set_up_site

from lotrack.services.vials import make_serial

DEPOT_BOX = "DEPOT/FRZ-1/R1/BOX-1"
SITE_BOX = "SITE/FRZ-A/R1/BOX-1"
OTHER_BOX = "OTHER/FRZ-1/R1/BOX-1"
QA, PHARM, PHARM2 = {"user": "qa.lee"}, {"user": "pharm.chen"}, {"user": "pharm.wang"}


def set_up_supply(lotrack, tmp_path: Path, vials: int = 4) -> list[str]:
    """The site of test_trial_cli, plus a depot holding lot EXO-02 ready to ship (released
    on 2026-02-01, before the tests' doses)."""
    set_up_site(lotrack, tmp_path)
    with freeze_time("2026-02-01 12:00:00"):
        return _set_up_depot(lotrack, tmp_path, vials)


def _set_up_depot(lotrack, tmp_path: Path, vials: int) -> list[str]:
    lotrack.ok("user", "add", "pharm.wang2", "--name", "Fang Wang", "--role", "pharmacist",
               "--password-stdin", input="correct-horse-42\n")
    lotrack.ok("storage", "add", DEPOT_BOX, "--capacity", "81", **PHARM)
    lotrack.ok("storage", "add", OTHER_BOX, "--capacity", "81", **PHARM)
    lotrack.ok("lot", "register", "EXO-02", "--product", "IPSEXO", "--manufactured",
               "2026-01-12", "--expiry", "2026-12-30T12:00", "--vials", str(vials), **QA)
    csv_file = tmp_path / "results-02.csv"
    csv_file.write_text(RESULTS)
    lotrack.ok("lot", "qc", "EXO-02", "--file", str(csv_file), **QA)
    lotrack.ok("lot", "release", "EXO-02", "--reason", "QC complete", **QA)
    lotrack.ok("lot", "receive", "EXO-02", "--at", DEPOT_BOX, "--time", "2026-02-01T09:00",
               **PHARM)
    return [v["serial"] for v in json.loads(lotrack.ok("vial", "list", "--lot", "EXO-02",
                                                       "--json"))]


def ship(lotrack, *create_args: str, monitor: bool = True, max_temp: str | None = "-80",
         receive: bool = True) -> str:
    out = lotrack.ok("shipment", "create", "--from", "DEPOT", "--to", "SITE", *create_args,
                     "--time", "2026-02-09T16:00", **PHARM)
    code = out.split()[1]
    lotrack.ok("shipment", "dispatch", code, "--courier", "World Courier", "--tracking", "WC-9",
               *(["--monitor", "TL-0042"] if monitor else []), "--time", "2026-02-10T08:00",
               **PHARM)
    if receive:
        lotrack.ok("shipment", "receive", code, "--box", SITE_BOX, "--time", "2026-02-11T10:00",
                   *(["--max-temp", max_temp] if max_temp else []), **PHARM2)
    return code


def gs1_scan(serial: str, lot: str = "EXO-02") -> str:
    return f"]d2010950600013435210{lot}<GS>17261230" + f"21{serial}"


def test_a_shipment_from_depot_to_site_scanned_in_proposed_and_documented(lotrack, tmp_path):
    serials = set_up_supply(lotrack, tmp_path)
    code = ship(lotrack, "--lot", "EXO-02", "--count", "3")
    assert code == "SH000001"
    shown = json.loads(lotrack.ok("shipment", "show", code, "--json", user="monitor.sun"))
    assert (shown["status"], shown["vial_count"], shown["remaining"]) == ("received", 3, 3)
    assert {v["status"] for v in shown["vials"]} == {"unconfirmed"}
    out = lotrack.ok("shipment", "confirm", code, "--scan", gs1_scan(serials[0]), "--gs", "<GS>",
                     **PHARM2)
    assert "confirmed" in out and f"{code}: 1 confirmed now; 2 of 3 vial(s) remain" in out
    # A keyboard-wedge scanner types one label per line.
    out = lotrack.ok("shipment", "confirm", code, "--gs", "<GS>", "--json",
                     input=f"{gs1_scan(serials[1])}\n{serials[0]}\n", **PHARM2)
    answers = json.loads(out)
    assert [a["answer"] for a in answers["answers"]] == ["confirmed", "already confirmed"]
    assert answers["remaining"] == 1
    listed = json.loads(lotrack.ok("shipment", "list", "--json", user="monitor.sun"))
    assert [(s["shipment"], s["status"], s["unconfirmed"]) for s in listed] == [
        (code, "received", 1)]
    # FEFO: EXO-02 (30 December, noon) before EXO-01 (end of 31 December); unscanned not listed.
    stock = json.loads(lotrack.ok("vial", "list", "--site", "SITE", "--dispensable", "--json",
                                  user="monitor.sun"))
    assert [v["lot"] for v in stock][:3] == ["EXO-02", "EXO-02", "EXO-01"]
    assert serials[2] not in [v["serial"] for v in stock]
    assert stock[0]["expiry"] == "2026-12-30 12:00 UTC"
    lotrack.ok("participant", "enroll", "S-001", "--group", "LOW", "--consented", "2026-03-01",
               "--sex", "F", "--birth-date", "1992-04-01", "--iua-score", "14", "--amh", "2.0",
               "--platelets", "210", "--aptt", "1.0", "--hba1c", "5.2", *ANSWERS,
               user="inv.liu")
    lotrack.ok("surgery", "record", "S-001", "--at", "2026-03-05T09:00", user="inv.liu")
    # The depot still holds a vial of EXO-02: the site comes from LOTRACK_SITE.
    refused = lotrack("dispense", "S-001", "--at", "2026-03-06T09:30", **PHARM)
    assert "IPSEXO can be dispensed at DEPOT, SITE: give --site" in refused.stderr
    proposal = lotrack.ok("dispense", "S-001", "--at", "2026-03-06T09:30", LOTRACK_SITE="SITE",
                          **PHARM)
    assert "Next due for S-001: cycle 1 perfusion 1" in proposal
    assert f"{stock[0]['serial']}  lot EXO-02  expires 2026-12-30 12:00 UTC  at {SITE_BOX}" in proposal
    lotrack.ok("dispense", "S-001", "--scan", gs1_scan(stock[0]["serial"]), "--gs", "<GS>",
               "--at", "2026-03-06T09:30", "--verified-by", "pharm.wang", **PHARM)
    pdf = tmp_path / "manifest.pdf"
    out = lotrack.ok("report", "manifest", code, "--out", str(pdf), user="monitor.sun")
    assert out.startswith(f"Wrote {pdf}")
    text = "\n".join(page.extract_text() for page in PdfReader(pdf).pages)
    for expected in ("Shipment Manifest", code, "Sender (from)", "DEPOT", "Receiver (to)", "SITE",
                     "EXO-02", "2026-12-30 12:00 UTC", "Store at or below -70 C", *serials[:3],
                     "Count: 3 vial(s).", "Issued by", "Received by", "Printed name: Pharm.Chen",
                     "Printed name: Pharm.Wang", "Meaning: shipment issued",
                     "Meaning: shipment received", "Date and time (UTC): 20", "TL-0042"):
        assert expected in text, expected
    assert serials[3] not in text
    image = pdfium.PdfDocument(str(pdf))[0].render(scale=4).to_pil()
    decoded = zxingcpp.read_barcodes(image)
    assert [(b.format.name, b.text) for b in decoded] == [("Code128", code)]
    assert lotrack.ok("report", "verify", str(pdf), user="monitor.sun").startswith("MATCHES")
    assert (tmp_path / "m2.pdf").exists() is False
    lotrack.ok("shipment", "manifest", code, "--out", str(tmp_path / "m2.pdf"), user="monitor.sun")
    assert "Audit trail intact" in lotrack.ok("audit", "verify", user="monitor.sun")


def test_a_quarantined_receipt_waits_for_qa_and_the_manifest_says_so(lotrack, tmp_path):
    serials = set_up_supply(lotrack, tmp_path, vials=2)
    code = ship(lotrack, "--serial", serials[0], "--serial", serials[1], max_temp="-52.5")
    shown = json.loads(lotrack.ok("shipment", "show", code, "--json", user="monitor.sun"))
    assert shown["status"] == "quarantined"
    assert "highest reading -52.5 C is above IPSEXO's storage limit -70 C" in \
        shown["quarantine_reason"]
    lotrack.ok("shipment", "confirm", code, "--scan", serials[0], **PHARM2)
    stock = json.loads(lotrack.ok("vial", "list", "--site", "SITE", "--dispensable", "--json",
                                  "--lot", "EXO-02", user="monitor.sun"))
    assert stock == []
    out = lotrack.ok("shipment", "release-quarantine", code, "--reason",
                     "excursion within stability data", **QA)
    assert out.strip() == f"Shipment {code} released from quarantine."
    stock = json.loads(lotrack.ok("vial", "list", "--site", "SITE", "--dispensable", "--json",
                                  "--lot", "EXO-02", user="monitor.sun"))
    assert [v["serial"] for v in stock] == [serials[0]]
    pdf = tmp_path / "q.pdf"
    lotrack.ok("report", "manifest", code, "--out", str(pdf), user="monitor.sun")
    text = PdfReader(pdf).pages[0].extract_text()
    assert "Quarantined at receipt" in text and "Released from quarantine by QA" in text


@pytest.mark.slow
def test_the_installed_script_reads_a_scanner_on_stdin(lotrack, tmp_path):
    serials = set_up_supply(lotrack, tmp_path, vials=2)
    code = ship(lotrack, "--lot", "EXO-02")
    unknown = make_serial(9999)  # a well-formed serial no vial has
    scanner = f"{gs1_scan(serials[0])}\r\n\n{serials[1]}\n{unknown}\n"
    done = lotrack.script("shipment", "confirm", code, "--gs", "<GS>", input=scanner,
                          user="pharm.wang")
    done.assert_one_error(exit_code=1)
    assert "2 confirmed now; 0 of 2 vial(s) remain unconfirmed" in done.stdout
    assert done.stderr.strip() == ("Error: 1 scan(s) not confirmed (unknown); first: no vial "
                                   f"{unknown}")


BAD = [
    (["shipment", "create", "--from", "DEPOT", "--to", "SITE", "--lot", "EXO-03"], PHARM,
     "Error: lot EXO-03 cannot be shipped: lot EXO-03 is quarantine: only released lots are "
     "shipped"),
    (["shipment", "create", "--from", "DEPOT", "--to", "SITE", "--serial", "@SHIPPED"], PHARM,
     "it is already in shipment SH000001 (prepared)"),
    (["shipment", "create", "--from", "DEPOT", "--to", "SITE", "--lot", "EXO-02", "--count",
      "9"], PHARM, "only 2 vial(s) of lot EXO-02 can be shipped from DEPOT"),
    (["shipment", "create", "--from", "DEPOT", "--to", "SITE", "--lot", "EXO-02", "--count", "1",
      "--count", "1"], PHARM, "give one --count per --lot"),
    (["shipment", "create", "--from", "DEPOT", "--to", "SITE", "--serial", "@SHIPPED"],
     {"user": "inv.liu"}, "needs the pharmacist or qa role"),
    (["shipment", "receive", "SH000002", "--box", OTHER_BOX], PHARM,
     f"{OTHER_BOX} is not at SITE: shipment SH000002 is addressed to SITE"),
    (["shipment", "receive", "SH000003", "--box", SITE_BOX], PHARM,
     "shipment SH000003 was reported lost (fell off the truck): it cannot be received"),
    (["shipment", "dispatch", "SH000002"], PHARM,
     "shipment SH000002 is in transit; only a prepared shipment can be dispatched"),
    (["shipment", "confirm", "SH000002", "--scan", "@SHIPPED"], PHARM,
     "shipment SH000002 is in transit: receive it before confirming its vials"),
    (["shipment", "confirm", "SH000004", "--scan", "@OTHER"], PHARM,
     "1 scan(s) not confirmed (not in this shipment)"),
    (["shipment", "confirm", "SH000004", "--scan", "hello"], PHARM,
     "1 scan(s) not confirmed (unknown)"),
    (["shipment", "release-quarantine", "SH000004", "--reason", "x"], QA,
     "shipment SH000004 is received; only a quarantined shipment can be released"),
    (["shipment", "show", "SH999999"], {"user": "monitor.sun"}, "Error: no shipment SH999999"),
    (["shipment", "show", "X12"], {"user": "monitor.sun"}, "is not a shipment code"),
    (["shipment", "list", "--status", "gone"], {"user": "monitor.sun"}, "unknown shipment status"),
    (["product", "add", "X2", "--name", "X", "--dnd-days", "5", "--dns-days", "3"], QA,
     "must be at least the do-not-dispense offset"),
    (["lot", "register", "EXO-09", "--product", "IPSEXO", "--manufactured", "2026-02-01",
      "--expiry", "2026-12-01T25:00", "--vials", "2"], QA, "expiry_time"),
    (["vial", "list"], {"user": "monitor.sun"}, "give --lot LOT or --site SITE"),
    (["dispense", "S-404", "--at", "2026-03-06T09:30"], PHARM, "no participant 'S-404'"),
]


@pytest.mark.parametrize(("args", "who", "message"), BAD, ids=[" ".join(a[:3]) for a, _, _ in BAD])
def test_bad_supply_input_gives_one_clear_error_and_changes_nothing(lotrack, tmp_path, args, who,
                                                                    message):
    serials = set_up_supply(lotrack, tmp_path, vials=6)
    lotrack.ok("lot", "register", "EXO-03", "--product", "IPSEXO", "--manufactured",
               "2026-01-12", "--expiry", "2026-12-30", "--vials", "2", **QA)
    lotrack.ok("lot", "receive", "EXO-03", "--at", DEPOT_BOX, "--time", "2026-02-01T09:00",
               **PHARM)
    lotrack.ok("shipment", "create", "--from", "DEPOT", "--to", "SITE", "--serial", serials[0],
               **PHARM)  # SH000001, prepared
    ship(lotrack, "--serial", serials[1], receive=False)  # SH000002, in transit
    lost = ship(lotrack, "--serial", serials[2], receive=False)  # SH000003, lost
    lotrack.ok("shipment", "lost", lost, "--reason", "fell off the truck", **PHARM)
    ship(lotrack, "--serial", serials[3])  # SH000004, received
    substitutions = {"@SHIPPED": serials[0], "@OTHER": serials[4]}
    args = [substitutions.get(a, a) for a in args]
    lotrack.refuses(*args, message=message, **who)
