"""GS1 element strings: what our labels encode, and what a scanner types back.

Encoding is done here by hand only as far as the domain needs (which AIs, in which
order, where a separator goes); parsing what a scanner sends is left to biip, a
maintained GS1 parser, wrapped so that every malformed scan becomes one clear error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime

from lotrack.errors import InvalidInput

GS = "\x1d"  # ASCII 29, what a scanner sends for FNC1 between fields
FNC1 = "\xf1"  # python-barcode's marker for FNC1 inside a GS1-128 symbol

# Fixed-length AIs we emit (length of the data); every other AI we emit is variable
# and must be closed by a separator when another field follows.
FIXED = {"01": 14, "11": 6, "17": 6, "7003": 10}
VARIABLE_MAX = {"10": 20, "21": 20, "30": 8, "91": 90, "92": 90, "7240": 20}
# The GS1 "character set 82" allowed in alphanumeric AIs.
CSET82 = re.compile(r"^[!\"%&'()*+,\-./0-9:;<=>?A-Z_a-z]*$")

SYMBOLOGIES = {
    "]C1": "GS1-128",
    "]d2": "GS1 DataMatrix",
    "]Q3": "GS1 QR Code",
    "]e0": "GS1 DataBar",
    "]C0": "Code 128",
    "]d1": "DataMatrix",
    "]Q1": "QR Code",
}
GS1_IDS = ("]C1", "]d2", "]Q3", "]e0")


def gtin_is_valid(gtin: str) -> bool:
    from stdnum import ean

    return len(gtin) == 14 and ean.is_valid(gtin)


def yymmdd(day: date) -> str:
    return day.strftime("%y%m%d")


def yymmddhhmm(moment: datetime) -> str:
    """AI 7003 is a local date and time; the caller passes it in the site's time zone."""
    return moment.strftime("%y%m%d%H%M")


def _check(ai: str, value: str) -> None:
    if ai in FIXED:
        if len(value) != FIXED[ai] or not value.isdigit():
            raise InvalidInput(f"GS1 ({ai}) needs {FIXED[ai]} digits, not {value!r}")
        if ai == "01" and not gtin_is_valid(value):
            raise InvalidInput(f"GTIN {value} has a wrong check digit")
        return
    limit = VARIABLE_MAX.get(ai)
    if limit is None:
        raise InvalidInput(f"lotrack does not encode GS1 AI ({ai})")
    if not value or len(value) > limit or not CSET82.match(value):
        raise InvalidInput(f"GS1 ({ai}) takes 1-{limit} characters of the GS1 set, not {value!r}")


def element_string(fields: list[tuple[str, str]], separator: str = GS) -> str:
    """The raw element string: AI + data, a separator after each variable field but the last."""
    parts = []
    for index, (ai, value) in enumerate(fields):
        _check(ai, value)
        parts.append(ai + value)
        if ai not in FIXED and index < len(fields) - 1:
            parts.append(separator)
    return "".join(parts)


def hri(fields: list[tuple[str, str]]) -> str:
    """The human-readable interpretation printed under the symbol: (01)...(10)..."""
    return "".join(f"({ai}){value}" for ai, value in fields)


# --- scanning ---------------------------------------------------------------


@dataclass(frozen=True)
class Scan:
    """What one scan says, before the database is asked whether it agrees."""

    raw: str
    symbology: str  # a name from SYMBOLOGIES, or "keyboard" when no identifier came
    gs1: bool
    fields: dict[str, str] = field(default_factory=dict)
    expiry: date | None = None
    use_by: datetime | None = None  # naive: AI 7003 is in the site's local time
    text: str | None = None  # the payload of a non-GS1 scan (a serial, a dose code, a box)

    @property
    def gtin(self) -> str | None:
        return self.fields.get("01")

    @property
    def lot(self) -> str | None:
        return self.fields.get("10")

    @property
    def serial(self) -> str | None:
        return self.fields.get("21") if self.gs1 else self.text


def parse_scan(text: str, substitute: str | None = None) -> Scan:
    """Parse what a keyboard-wedge scanner typed: with or without a symbology identifier,
    the separator as ASCII 29 or as `substitute`, or the HRI form "(01)...(10)..."."""
    raw = text.strip("\r\n ")
    if not raw:
        raise InvalidInput("empty scan")
    if substitute:
        raw = raw.replace(substitute, GS)
    ident = raw[:3] if raw.startswith("]") else ""
    if ident and ident not in SYMBOLOGIES:
        raise InvalidInput(f"unknown symbology identifier {ident!r} at the start of the scan")
    body = raw[len(ident):]
    if not body:
        raise InvalidInput("the scan holds a symbology identifier and nothing else")
    if ident in GS1_IDS:
        return _parse_gs1(ident, body, text)
    if not ident and body.startswith("("):
        return _parse_gs1("]C1", _from_hri(body), text, "keyboard")
    if not ident and GS in body:
        return _parse_gs1("]C1", body, text, "keyboard")
    if not ident and re.fullmatch(r"01\d{14}(?:\d.*)?", body):
        # A scanner set to send no identifier still starts GS1 data with (01).
        return _parse_gs1("]C1", body, text, "keyboard")
    if GS in body:
        raise InvalidInput("the scan holds a GS1 separator but is not GS1 data")
    return Scan(raw=text, symbology=SYMBOLOGIES.get(ident, "keyboard"), gs1=False, text=body)


def _from_hri(body: str) -> str:
    pairs = re.findall(r"\((\d{2,4})\)([^(]+)", body)
    if not pairs or "".join(f"({a}){v}" for a, v in pairs) != body:
        raise InvalidInput(f"{body!r} is not a GS1 element string in (AI)value form")
    return "".join(ai + value + (GS if ai not in FIXED and i < len(pairs) - 1 else "")
                   for i, (ai, value) in enumerate(pairs))


def _parse_gs1(ident: str, body: str, text: str, symbology: str | None = None) -> Scan:
    import biip

    try:
        result = biip.parse(ident + body)
    except Exception as exc:  # biip raises its own ParseError subclasses
        raise InvalidInput(f"unreadable GS1 scan: {exc}") from exc
    if result.gs1_message is None:
        reason = result.gs1_message_error or "not a GS1 element string"
        raise InvalidInput(f"unreadable GS1 scan: {reason}")
    if result.gtin_error:
        raise InvalidInput(f"GS1 scan refused: {result.gtin_error}")
    fields: dict[str, str] = {}
    expiry: date | None = None
    use_by: datetime | None = None
    for element in result.gs1_message.element_strings:
        ai = element.ai.ai
        if ai in fields:
            raise InvalidInput(f"GS1 scan refused: AI ({ai}) appears twice")
        fields[ai] = element.value
        if ai == "17":
            expiry = element.date
        elif ai == "7003":
            use_by = element.datetime
    if "01" in fields and not gtin_is_valid(fields["01"]):
        raise InvalidInput(f"GS1 scan refused: GTIN {fields['01']} has a wrong check digit")
    if ("10" in fields or "21" in fields) and "01" not in fields:
        raise InvalidInput("GS1 scan refused: a lot or serial without a GTIN (01)")
    return Scan(raw=text, symbology=symbology or SYMBOLOGIES[ident], gs1=True, fields=fields,
                expiry=expiry, use_by=use_by)
