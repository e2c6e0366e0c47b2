"""Custody reports, `report verify`, traces and recall impact from the command line."""

import json

import pytest
from pypdf import PdfReader
from test_label_cli import enrol_and_operate, serials
from test_trial_cli import set_up_site


def dispense_first(lotrack) -> str:
    serial = serials(lotrack)[0]
    lotrack.ok("dispense", "S-001", "--vial", serial, "--at", "2026-03-06T09:30",
               "--verified-by", "pharm.wang", "--no-label", user="pharm.chen")
    return serial


@pytest.mark.slow
def test_custody_pdf_then_verify_with_the_installed_script(lotrack, tmp_path):
    set_up_site(lotrack, tmp_path)
    enrol_and_operate(lotrack, "S-001")
    serial = dispense_first(lotrack)
    out = tmp_path / "custody.pdf"
    done = lotrack.script("report", "custody", "--vial", serial, "--out", str(out), user="monitor.sun")
    assert done.exit_code == 0, done.stderr
    # set_up_site receives the lot (10:00) before QA releases it (12:00): the receipt
    # precedes the step before it, one gap.
    assert "5 custody steps, 1 gap(s)" in done.stdout
    text = "\n".join(page.extract_text() for page in PdfReader(out).pages)
    for expected in (serial, "EXO-01", "received at site", "lot QC released", "dispensed",
                     "second-person verification", "out of time order", "Page 1 of",
                     "Content SHA-256"):
        assert expected in text

    done = lotrack.script("report", "verify", str(out), user="monitor.sun")
    assert done.exit_code == 0 and done.stdout.startswith("MATCHES: custody report"), done.stderr

    lotrack.ok("administer", "D000001", "--at", "2026-03-06T10:00", user="inv.liu")
    done = lotrack.script("report", "verify", str(out), user="monitor.sun")
    assert done.exit_code == 0, "a later step does not make a printed report wrong"

    # The receipt event the report shows, rewritten behind lotrack's back.
    import sqlalchemy

    engine = sqlalchemy.create_engine(lotrack.db_url)
    with engine.begin() as conn:
        conn.execute(sqlalchemy.text("UPDATE audit_events SET username = 'qa.lee' WHERE "
                                     "entity = 'vial' AND entity_id = :s AND action = 'receive'"),
                     {"s": serial})
    engine.dispose()
    done = lotrack.script("report", "verify", str(out), "--json", user="monitor.sun")
    assert done.exit_code == 1
    verdict = json.loads(done.stdout)
    assert verdict["matches"] is False
    assert verdict["problems"][0] == "the database no longer gives the content this report shows"
    assert done.stderr.strip() == "Error: custody.pdf does not match the database"


def test_every_pdf_report_verifies(lotrack, tmp_path):
    set_up_site(lotrack, tmp_path)
    for args in (["coa", "EXO-01"], ["accountability"], ["safety"], ["consistency", "IPSEXO"]):
        out = tmp_path / f"{args[0]}.pdf"
        lotrack.ok("report", *args, "--out", str(out), user="monitor.sun")
        assert lotrack.ok("report", "verify", str(out), user="monitor.sun").startswith("MATCHES")


def test_traces_and_recall_dry_run(lotrack, tmp_path):
    set_up_site(lotrack, tmp_path)
    enrol_and_operate(lotrack, "S-001")
    serial = dispense_first(lotrack)
    data = json.loads(lotrack.ok("trace", "lot", "EXO-01", "--json", user="monitor.sun"))
    assert [p["subject"] for p in data["participants"]] == ["S-001"]
    assert len(data["unused_at_site"]) == 5 and serial not in data["unused_at_site"]
    assert "S-001 (LOW, enrolled)" in lotrack.ok("trace", "vial", serial, user="monitor.sun")
    assert "D000001" in lotrack.ok("trace", "participant", "S-001", user="monitor.sun")

    before = lotrack.ok("audit", "log", "--json", "--limit", "100000", user="monitor.sun")
    out = lotrack.ok("lot", "recall", "EXO-01", "--dry-run", user="qa.lee")
    assert "5 vial(s) in stock would be quarantined" in out
    assert "1 participant(s) exposed: S-001" in out
    assert "dose D000001 for S-001 is dispensed, not administered" in out
    assert lotrack.ok("audit", "log", "--json", "--limit", "100000", user="monitor.sun") == before

    out = lotrack.ok("lot", "recall", "EXO-01", "--reason", "retained sample failed", user="qa.lee")
    assert "Lot EXO-01 is recalled." in out and "5 vial(s) in stock were quarantined" in out
    refused = lotrack("administer", "D000001", "--at", "2026-03-06T10:00", user="inv.liu")
    refused.assert_one_error("lot EXO-01 is recalled")


@pytest.mark.parametrize(("args", "user", "message"), [
    (["report", "custody", "--vial", "V00000013", "--lot", "EXO-01", "--out", "x.pdf"],
     "monitor.sun", "give exactly one of --vial, --lot or --participant"),
    (["report", "custody", "--vial", "V00000010", "--out", "x.pdf"], "monitor.sun",
     "wrong check character"),
    (["report", "custody", "--participant", "S-404", "--out", "x.pdf"], "monitor.sun", "S-404"),
    (["trace", "lot", "NOPE"], "monitor.sun", "no lot 'NOPE'"),
    (["trace", "ae", "AE99999"], "monitor.sun", "no adverse event 'AE99999'"),
    (["trace", "ae", "X1"], "monitor.sun", "is not an adverse event id"),
    (["lot", "recall", "EXO-01"], "qa.lee", "give --reason"),
    (["lot", "recall", "NOPE", "--dry-run"], "qa.lee", "no lot 'NOPE'"),
])
def test_bad_custody_and_trace_input(lotrack, tmp_path, args, user, message):
    set_up_site(lotrack, tmp_path)
    lotrack.refuses(*args, user=user, message=message)


def test_verify_refuses_a_pdf_lotrack_did_not_write(lotrack, tmp_path):
    from reportlab.pdfgen.canvas import Canvas

    other = tmp_path / "other.pdf"
    canvas = Canvas(str(other))
    canvas.drawString(100, 700, "not a lotrack report")
    canvas.save()
    lotrack.refuses("report", "verify", str(other), message="is not a report lotrack can verify")
    (tmp_path / "garbage.pdf").write_text("no pdf")
    lotrack.refuses("report", "verify", str(tmp_path / "garbage.pdf"), message="cannot read")
