"""The trial driven from the command line, as the pharmacy, QA and investigators do."""

import json
from pathlib import Path

import pytest
from freezegun import freeze_time
from pypdf import PdfReader

from lotrack.schemas.lots import shipped_spec_path
from lotrack.schemas.protocol import default_protocol_path, load_protocol_file

PROTOCOL = load_protocol_file(default_protocol_path())
ANSWERS = ([f"--answer={q.code}=yes" for q in PROTOCOL.eligibility.inclusions]
           + [f"--answer={q.code}=no" for q in PROTOCOL.eligibility.exclusions])
RESULTS = """attribute,value,unit,method,tested_at,analyst
particle_concentration,3.2e11,particles/mL,NTA,2026-01-20,J. Wu
modal_particle_size,112,nm,NTA,2026-01-20,J. Wu
total_protein,180,ug/mL,BCA,2026-01-20,J. Wu
particle_to_protein_ratio,1.8e9,particles/ug,calc,2026-01-20,J. Wu
cd63,positive,result,WB,2026-01-20,J. Wu
cd81,positive,result,WB,2026-01-20,J. Wu
tsg101,positive,result,WB,2026-01-20,J. Wu
calnexin,negative,result,WB,2026-01-20,J. Wu
endotoxin,<0.05,EU/mL,LAL,2026-01-20,J. Wu
sterility,no growth,result,,2026-01-20,J. Wu
mycoplasma,negative,result,,2026-01-20,J. Wu
tgf_beta1,850,pg/mL,ELISA,2026-01-20,J. Wu
bdnf,420,pg/mL,ELISA,2026-01-20,J. Wu
residual_host_cell_dna,2.1,ng/dose,qPCR,2026-01-20,J. Wu
appearance,"clear, colourless, free of visible particles",result,,2026-01-20,J. Wu
ph,7.3,pH,,2026-01-20,J. Wu
osmolality,295,mOsm/kg,,2026-01-20,J. Wu
"""


def set_up_site(lotrack, tmp_path: Path) -> None:
    """Users, product, lot EXO-01 released and received, protocol active: all on
    2026-02-01, before the tests' surgeries (a dose comes only from a lot released then)."""
    with freeze_time("2026-02-01 12:00:00"):
        _set_up_site(lotrack, tmp_path)


def _set_up_site(lotrack, tmp_path: Path) -> None:
    for username, role in (("qa.lee", "qa"), ("pharm.chen", "pharmacist"),
                           ("pharm.wang", "pharmacist"), ("inv.liu", "investigator"),
                           ("monitor.sun", "monitor")):
        lotrack.ok("user", "add", username, "--name", username.title(), "--role", role,
                   "--password-stdin", input="correct-horse-42\n")
    qa = {"user": "qa.lee"}
    lotrack.ok("product", "add", "IPSEXO", "--name", "iPS-Exo", "--gtin", "09506000134352", **qa)
    lotrack.ok("spec", "load", str(shipped_spec_path("IPSEXO")), **qa)
    lotrack.ok("spec", "activate", "IPSEXO", "1", **qa)
    lotrack.ok("lot", "register", "EXO-01", "--product", "IPSEXO", "--manufactured",
               "2026-01-10", "--expiry", "2026-12-31", "--vials", "6", **qa)
    csv_file = tmp_path / "results.csv"
    csv_file.write_text(RESULTS)
    lotrack.ok("lot", "qc", "EXO-01", "--file", str(csv_file), **qa)
    lotrack.ok("lot", "release", "EXO-01", "--reason", "QC complete", **qa)
    lotrack.ok("storage", "add", "SITE/FRZ-A/R1/BOX-1", "--capacity", "81", user="pharm.chen")
    lotrack.ok("lot", "receive", "EXO-01", "--at", "SITE/FRZ-A/R1/BOX-1", "--time",
               "2026-02-01T10:00", user="pharm.chen")
    lotrack.ok("protocol", "load", user="inv.liu")
    lotrack.ok("protocol", "activate", "IPSEXO-IUA-01", "1", user="inv.liu")


def test_a_perfusion_from_release_to_administration_through_the_cli(lotrack, tmp_path):
    set_up_site(lotrack, tmp_path)
    inv = {"user": "inv.liu"}
    lotrack.ok("participant", "enroll", "S-001", "--group", "LOW", "--consented", "2026-03-01",
               "--sex", "F", "--birth-date", "1992-04-01", "--iua-score", "14", "--amh", "2.0",
               "--platelets", "210", "--aptt", "1.0", "--hba1c", "5.2", *ANSWERS, **inv)
    lotrack.ok("surgery", "record", "S-001", "--at", "2026-03-05T09:00", "--iua-score", "15",
               **inv)
    vials = json.loads(lotrack.ok("vial", "list", "--lot", "EXO-01", "--json"))
    serial = vials[0]["serial"]
    out = lotrack.ok("dispense", "S-001", "--vial", serial, "--at", "2026-03-06T09:30",
                     "--verified-by", "pharm.wang", user="pharm.chen")
    assert "Dose D000001: perfusion 1 at 24.5 h after surgery (POD 1), in window" in out
    lotrack.ok("administer", "D000001", "--at", "2026-03-06T10:00", "--volume-ml", "1.0", **inv)
    schedule = json.loads(lotrack.ok("participant", "schedule", "S-001", "--json",
                                     user="monitor.sun"))
    first = schedule[0]
    assert (first["status"], first["dose"], first["vials"], first["lots"]) == (
        "administered", "D000001", [serial], ["EXO-01"])
    assert [r["status"] for r in schedule[1:3]] == ["missed", "missed"]
    lotrack.ok("report", "coa", "EXO-01", "--out", str(tmp_path / "coa.pdf"), user="monitor.sun")
    assert "EXO-01" in PdfReader(tmp_path / "coa.pdf").pages[0].extract_text()
    lotrack.ok("report", "accountability", "--out", str(tmp_path / "darf.csv"),
               user="monitor.sun")
    recon = (tmp_path / "darf-reconciliation.csv").read_text().splitlines()
    assert recon[1] == "EXO-01,IPSEXO,6,1,0,0,0,5,6,0,"
    assert "Audit trail intact" in lotrack.ok("audit", "verify", user="monitor.sun")


def test_the_installed_script_dispenses_as_a_user_would(lotrack, tmp_path):
    set_up_site(lotrack, tmp_path)
    inv = {"user": "inv.liu"}
    lotrack.ok("participant", "enroll", "S-002", "--group", "LOW", "--consented", "2026-03-01",
               "--sex", "F", "--birth-date", "1990-04-01", "--iua-score", "20", "--afc", "6",
               "--platelets", "190", "--aptt", "1.1", "--hba1c", "5.0", *ANSWERS, **inv)
    lotrack.ok("surgery", "record", "S-002", "--at", "2026-03-05T09:00", **inv)
    serial = json.loads(lotrack.ok("vial", "list", "--lot", "EXO-01", "--json"))[1]["serial"]
    done = lotrack.script("dispense", "S-002", "--vial", serial, "--at", "2026-03-06T19:00",
                          "--verified-by", "pharm.wang", user="pharm.chen")
    done.assert_one_error("perfusion 1 of cycle 1", exit_code=1)
    assert done.stderr.startswith("Error: perfusion 1 of cycle 1")
    done = lotrack.script("dispense", "S-002", "--vial", serial, "--at", "2026-03-06T19:00",
                          "--verified-by", "pharm.wang", "--deviation", "late theatre list",
                          user="pharm.chen")
    assert done.exit_code == 0, done.stderr
    assert "OUTSIDE window (late theatre list)" in done.stdout


@pytest.mark.parametrize(("args", "user", "message"), [
    (["lot", "release", "NOPE", "--reason", "x"], "qa.lee", "Error: no lot 'NOPE'"),
    (["lot", "release", "EXO-01", "--reason", "x"], "qa.lee",
     "Error: lot EXO-01 is released; it cannot become released"),
    (["lot", "hold", "EXO-01", "--reason", "x"], "pharm.chen", "needs the qa role"),
    (["lot", "register", "EXO-02", "--product", "IPSEXO", "--manufactured", "2026-02-30",
      "--expiry", "2026-12-01", "--vials", "2"], "qa.lee", "manufactured_on"),
    (["lot", "register", "EXO-02", "--product", "IPSEXO", "--manufactured", "2026-02-01",
      "--expiry", "2026-01-01", "--vials", "2"], "qa.lee", "must follow manufacture"),
    (["lot", "register", "EXO-02", "--product", "IPSEXO", "--manufactured", "2026-02-01",
      "--expiry", "2026-12-01", "--vials", "-4"], "qa.lee", "vials"),
    (["lot", "register", "EXO-01", "--product", "IPSEXO", "--manufactured", "2026-02-01",
      "--expiry", "2026-12-01", "--vials", "4"], "qa.lee", "already registered"),
    (["lot", "qc", "EXO-01", "--result", "total_protein=abc", "--reason", "x"], "qa.lee",
     "not a number"),
    (["vial", "move", "V00000010", "--to", "SITE/FRZ-A/R1/BOX-1"], "pharm.chen",
     "wrong check character"),
    (["vial", "move", "V00000021", "--to", "SITE/FRZ-A/R1/BOX-1", "--position", "1"],
     "pharm.chen", "position 1 of SITE/FRZ-A/R1/BOX-1 is occupied"),
    (["dispense", "S-404", "--vial", "V00000021", "--verified-by", "pharm.wang"], "pharm.chen",
     "Error: no participant 'S-404'"),
    (["dispense", "S-404", "--vial", "V00000021", "--verified-by", "pharm.wang", "--at",
      "yesterday"], "pharm.chen", "is not a date and time"),
    (["participant", "enroll", "S-9", "--group", "LOW", "--consented", "2026-03-01"],
     "inv.liu", "is not eligible"),
    (["report", "accountability", "--out", "x.txt"], "monitor.sun", "must end in .pdf or .csv"),
    (["product", "add", "X1", "--name", "X", "--gtin", "09506000134353"], "qa.lee",
     "check digit"),
    (["lot", "list"], "nobody", "unknown user 'nobody'"),
])
def test_bad_input_gives_one_clear_error_and_changes_nothing(lotrack, tmp_path, args, user,
                                                              message):
    set_up_site(lotrack, tmp_path)
    lotrack.refuses(*args, user=user, message=message)
