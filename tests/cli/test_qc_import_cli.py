"""`lotrack lot import-qc`: a laboratory's results file for several lots, from the shell."""

from pathlib import Path

from lotrack.schemas.lots import example_qc_results, shipped_spec_path

HEADER = "lot,attribute,value,unit,method,tested_at,analyst\n"


def rows(lot: str, product: str = "IPSEXO", ph: str | None = None) -> str:
    return "".join(f'{lot},{name},"{ph if name == "ph" and ph else value}",{unit},m,'
                   f"2026-01-20,J. Wu\n" for name, value, unit in example_qc_results(product))


def set_up(lotrack) -> dict[str, str]:
    lotrack.ok("user", "add", "qa.lee", "--name", "Qa Lee", "--role", "qa", "--password-stdin",
               input="correct-horse-42\n")
    qa = {"user": "qa.lee"}
    lotrack.ok("product", "add", "IPSEXO", "--name", "iPS-Exo", "--gtin", "09506000134352", **qa)
    lotrack.ok("spec", "load", str(shipped_spec_path("IPSEXO")), **qa)
    lotrack.ok("spec", "activate", "IPSEXO", "1", **qa)
    for lot in ("EXO-01", "EXO-02"):
        lotrack.ok("lot", "register", lot, "--product", "IPSEXO", "--manufactured", "2026-01-10",
                   "--expiry", "2026-12-31", "--vials", "4", **qa)
    return qa


def test_the_installed_script_imports_a_file_for_two_lots(lotrack, tmp_path: Path):
    qa = set_up(lotrack)
    path = tmp_path / "lab-export.csv"
    path.write_text(HEADER + rows("EXO-01") + rows("EXO-02", ph="8.1"))
    done = lotrack.script("lot", "import-qc", str(path), **qa)
    assert done.exit_code == 0, done.stderr
    assert "34 results recorded for 2 lots; 1 lot(s) with a result not passing: EXO-02" in done.stdout
    assert "EXO-01" in done.stdout and "IPSEXO" in done.stdout
    lotrack.ok("lot", "release", "EXO-01", "--reason", "QC complete", **qa)
    refused = lotrack.script("lot", "release", "EXO-02", "--reason", "QC complete", **qa)
    refused.assert_one_error("ph 8.1 pH is out of specification")


def test_a_bad_file_is_refused_whole_with_one_error(lotrack, tmp_path: Path):
    qa = set_up(lotrack)
    cases = {
        "unknown lot": (HEADER + rows("EXO-01") + rows("EXO-99"), "no lot 'EXO-99'"),
        "bad value": (HEADER + rows("EXO-01") + "EXO-02,ph,acid,pH,m,2026-01-20,J. Wu\n",
                      "row 19: ph: 'acid' is not a number"),
        "no lot column": ("attribute,value,unit,method,tested_at,analyst\nph,7,pH,m,2026-01-20,A\n",
                          "lacks column(s) lot"),
        "empty": (HEADER, "no result rows"),
    }
    for name, (text, message) in cases.items():
        path = tmp_path / f"{name}.csv"
        path.write_text(text)
        lotrack.refuses("lot", "import-qc", str(path), message=message, **qa)
    lotrack.refuses("lot", "import-qc", str(tmp_path / "missing.csv"), message="cannot read", **qa)
    path = tmp_path / "good.csv"
    path.write_text(HEADER + rows("EXO-01"))
    lotrack.refuses("lot", "import-qc", str(path), message="needs the qa role", user="admin")
