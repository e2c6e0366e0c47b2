"""The shipped protocol file matches the registry entry; a bad file is refused with reasons."""

import tomllib

import pytest

from lotrack.errors import InvalidInput
from lotrack.schemas.protocol import default_protocol_path, load_protocol_file, load_protocol_text

SHIPPED = default_protocol_path().read_text()


def test_shipped_protocol_has_29_participants_in_4_groups_one_placebo():
    protocol = load_protocol_file(default_protocol_path())
    assert protocol.protocol.target_enrolment == 29
    assert len(protocol.groups) == 4
    assert sum(g.planned for g in protocol.groups) == 29
    assert [g.product for g in protocol.groups].count("PLACEBO") == 1
    assert protocol.protocol.max_cycles == 2


def test_shipped_cycle_is_three_perfusions_the_first_24_hours_after_surgery():
    perfusions = load_protocol_file(default_protocol_path()).cycle.perfusions
    assert [(p.number, p.target_hours, p.window_hours) for p in perfusions] == [
        (1, 24, 6), (2, 72, 6), (3, 120, 6)]



@pytest.mark.parametrize(("old", "new", "message"), [
    ("planned = 8", "planned = 9", "plan 30 participants"),
    ("target_hours = 72", "target_hours = 26", "overlap"),
    ('code = "PBO"', 'code = "LOW"', "group codes must be unique"),
    ("age_min = 20", "age_min = 50", "age_min is above age_max"),
    ("max_cycles = 2", "max_cycles = 2\nsurprise = 1", "Extra inputs are not permitted"),
])
def test_a_bad_protocol_file_is_refused_with_the_reason(old, new, message):
    assert old in SHIPPED
    with pytest.raises(InvalidInput) as error:
        load_protocol_text(SHIPPED.replace(old, new, 1), "edited.toml")
    assert message in str(error.value)


def test_a_file_that_is_not_toml_is_refused():
    with pytest.raises(InvalidInput, match="not valid TOML"):
        load_protocol_text("[protocol\ncode=", "broken.toml")


def test_shipped_file_is_plain_toml():
    assert tomllib.loads(SHIPPED)["protocol"]["code"] == "IPSEXO-IUA-01"
