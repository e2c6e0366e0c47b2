"""The GS1 element strings we encode, and the scan parser against every form a scanner sends."""

from datetime import date, datetime

import biip
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lotrack import gs1
from lotrack.errors import InvalidInput

GTIN = "09506000134352"
FIELDS = [("01", GTIN), ("10", "EXO-2601"), ("17", "270131"), ("21", "V0000061X")]
RAW = "0109506000134352" + "10EXO-2601\x1d" + "17270131" + "21V0000061X"


def test_a_separator_closes_each_variable_field_that_another_follows():
    assert gs1.element_string(FIELDS) == RAW
    # (10) last: nothing after it, so no separator; fixed (17) never takes one.
    assert gs1.element_string([("01", GTIN), ("17", "270131"), ("10", "EXO-2601")]) \
        == "010950600013435217270131" + "10EXO-2601"
    assert gs1.hri(FIELDS) == "(01)09506000134352(10)EXO-2601(17)270131(21)V0000061X"


@pytest.mark.parametrize("fields, reason", [
    ([("01", "09506000134353")], "check digit"),
    ([("01", GTIN), ("10", "A" * 21)], "1-20 characters"),
    ([("01", GTIN), ("10", "LOT 1")], "GS1 set"),
    ([("01", GTIN), ("17", "2701")], "6 digits"),
    ([("01", GTIN), ("99", "X")], "does not encode"),
])
def test_what_cannot_be_encoded_is_refused(fields, reason):
    with pytest.raises(InvalidInput, match=reason):
        gs1.element_string(fields)


@pytest.mark.parametrize("text, substitute, symbology", [
    ("]d2" + RAW, None, "GS1 DataMatrix"),
    ("]C1" + RAW, None, "GS1-128"),
    (RAW, None, "keyboard"),
    ("]C1" + RAW.replace("\x1d", "<GS>"), "<GS>", "GS1-128"),
    (RAW.replace("\x1d", "^]"), "^]", "keyboard"),
    ("(01)09506000134352(10)EXO-2601(17)270131(21)V0000061X", None, "keyboard"),
    ("]d2" + RAW + "\r\n", None, "GS1 DataMatrix"),
])
def test_every_form_a_scanner_sends_gives_the_same_fields(text, substitute, symbology):
    scan = gs1.parse_scan(text, substitute)
    assert scan.gs1 and scan.symbology == symbology
    assert scan.fields == dict(FIELDS)
    assert (scan.gtin, scan.lot, scan.serial, scan.expiry) \
        == (GTIN, "EXO-2601", "V0000061X", date(2027, 1, 31))


def test_a_use_by_date_and_time_and_an_end_of_month_expiry():
    scan = gs1.parse_scan("]C1" + "0109506000134352" + "7003260310153021D000012")
    assert scan.use_by == datetime(2026, 3, 10, 15, 30)
    assert gs1.parse_scan("]C1" + "0109506000134352" + "17270200").expiry == date(2027, 2, 28)


@pytest.mark.parametrize("text, message", [
    ("]C1" + "0109506000134353" + "10EXO-2601", "check digit"),
    ("]C1" + "0109506000134352" + "10EXO-2601\x1d" + "2399X", "Application Identifier"),
    ("]C1" + "01095060001343", "(01)"),
    ("]C1" + "0109506000134352" + "1727013", "(17)"),
    ("]C1" + "0109506000134352" + "17271331", "(17)"),
    ("]C1" + "10EXO-2601", "without a GTIN"),
    ("]X9" + RAW, "symbology identifier"),
    ("]d2", "nothing else"),
    ("   ", "empty scan"),
    ("(01)09506000134352 (10)", "(AI)value"),
    ("V0000061X\x1d", "Application Identifier"),
])
def test_a_malformed_scan_gives_a_clear_error(text, message):
    with pytest.raises(InvalidInput, match=message.replace("(", r"\(").replace(")", r"\)")):
        gs1.parse_scan(text)


def test_a_scan_that_is_not_gs1_is_passed_on_as_text():
    scan = gs1.parse_scan("]C0V0000061X")
    assert (scan.gs1, scan.text, scan.serial, scan.symbology) == (False, "V0000061X", "V0000061X",
                                                                  "Code 128")


ALNUM = st.text(alphabet="ABCDEFGHJKLMNPQRSTUVWXYZ0123456789-./", min_size=1, max_size=20)


@given(lot=ALNUM, serial=ALNUM, expiry=st.dates(date(2000, 1, 1), date(2099, 12, 31)))
def test_what_we_encode_an_independent_parser_reads_back(lot, serial, expiry):
    fields = [("01", GTIN), ("10", lot), ("17", gs1.yymmdd(expiry)), ("21", serial)]
    raw = gs1.element_string(fields)
    parsed = biip.parse("]C1" + raw).gs1_message
    assert [(e.ai.ai, e.value) for e in parsed.element_strings] == fields
    assert gs1.parse_scan("]d2" + raw).fields == dict(fields)
