"""Rules of the safety summary and the SDTM shapes that need no database."""

from datetime import timedelta

import pytest

from lotrack.errors import InvalidInput
from lotrack.services import ctcae
from lotrack.services.safety_report import MARGIN, _flags
from lotrack.services.sdtm import iso_duration, split_action


def row(incidence, severe=(), saes=()):
    return {"incidence": incidence, "related_severe_aes": list(severe),
            "related_saes": list(saes)}


@pytest.mark.parametrize(("incidence", "reference", "flagged"), [
    (0.7, 0.5, False),  # exactly the placebo share plus the margin: not above it
    (0.7001, 0.5, True),
    (0.2, None, False),  # no placebo exposure: compared with 0
    (0.25, None, True),
    (0.0, 0.0, False),
])
def test_the_rate_rule_flags_only_above_placebo_plus_the_margin(incidence, reference, flagged):
    assert MARGIN == 0.20
    assert bool(_flags(row(incidence), False, reference)) is flagged


def test_placebo_lots_are_flagged_only_for_related_severe_or_serious_events():
    assert _flags(row(1.0), True, 0.0) == []
    assert _flags(row(0.0, severe=["AE00004"]), True, 0.0) == ["related grade >= 3: AE00004"]
    assert _flags(row(0.0, saes=["AE00002"]), False, 0.5) == ["related SAE: AE00002"]


@pytest.mark.parametrize(("delta", "text"), [
    (timedelta(hours=24), "PT24H"), (timedelta(hours=24, minutes=30), "PT24H30M"),
    (timedelta(minutes=5), "PT5M"), (timedelta(0), "PT0M"),
    (timedelta(hours=120, seconds=40), "PT120H1M"), (timedelta(hours=-2), "-PT2H"),
])
def test_elapsed_times_are_iso_8601_durations(delta, text):
    assert iso_duration(delta) == text


@pytest.mark.parametrize(("action", "expected"), [
    (None, ("", "")),
    ("dose not changed", ("DOSE NOT CHANGED", "")),
    ("Drug withdrawn: participant withdrew", ("DRUG WITHDRAWN", "participant withdrew")),
    ("paracetamol 1 g", ("", "paracetamol 1 g")),
    ("unknownish text", ("", "unknownish text")),
])
def test_the_action_text_fills_aeacn_when_it_starts_with_a_cdisc_term(action, expected):
    assert split_action(action) == expected


def test_the_shipped_ctcae_file_codes_terms_and_aliases_and_knows_their_grades():
    assert ctcae.code_term("ENDOMETRITIS").term == "Endometrial infection"
    assert ctcae.code_term("Pyrexia").soc == "General disorders and administration site conditions"
    assert ctcae.code_term("Anaphylaxis").grades == (3, 4, 5)
    assert ctcae.code_term("itchy knees").needs_coding
    with pytest.raises(InvalidInput, match="no grade 4 for 'Pelvic pain'"):
        ctcae.check_grade(ctcae.code_term("pelvic pain"), 4)
    ctcae.check_grade(ctcae.code_term("itchy knees"), 5)
