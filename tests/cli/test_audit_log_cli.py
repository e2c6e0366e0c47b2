"""`lotrack audit log` over a trail longer than one page: events are read and written page
by page (bounded memory, short transactions), and what the reader sees is what one
reading of the whole trail would give: every selected event once, oldest first."""

from __future__ import annotations

import json

import pytest
from trialkit import Trial

from lotrack import audit, db
from lotrack.services.audit_trail import PAGE


@pytest.fixture
def long_trail(lotrack, database, make_user) -> int:
    trial = Trial.build(database, make_user)
    trial.lot(vials=PAGE + 300, receive=False)  # an event per vial: more than a page holds
    with db.unit_of_work(database.engine) as session:
        return audit.head(session)[0]


def log(lotrack, *args: str) -> str:
    return lotrack.ok("audit", "log", *args, user="monitor.sun")


def test_the_whole_trail_as_json_is_every_event_once_in_order(lotrack, long_trail):
    events = json.loads(log(lotrack, "--json", "--limit", "1000000"))
    assert [e["seq"] for e in events] == list(range(1, long_trail + 1))
    assert len({e["hash"] for e in events}) == long_trail


def test_a_limit_gives_the_most_recent_events_oldest_first(lotrack, long_trail):
    last_five = json.loads(log(lotrack, "--json", "--limit", "5"))
    assert [e["seq"] for e in last_five] == list(range(long_trail - 4, long_trail + 1))
    vials = json.loads(log(lotrack, "--json", "--entity", "vial", "--limit", str(PAGE + 10)))
    assert len(vials) == PAGE + 10 and {e["entity"] for e in vials} == {"vial"}
    seqs = [e["seq"] for e in vials]
    assert seqs == sorted(seqs) and seqs[-1] < long_trail  # vials first, the lot's release later


def test_a_long_table_comes_in_aligned_pages_with_every_row(lotrack, long_trail):
    text = log(lotrack, "--limit", str(PAGE + 200))
    pages = text.strip("\n").split("\n\n")
    assert len(pages) == 2
    rows = [line for page in pages for line in page.splitlines()[2:]]  # under the headers
    assert [int(r.split()[0]) for r in rows] == list(range(long_trail - PAGE - 199,
                                                           long_trail + 1))
    for page in pages:
        header, rule = page.splitlines()[:2]
        assert header.startswith("seq") and set(rule) <= {"-", " "}


def test_nothing_selected_says_so(lotrack, long_trail):
    assert log(lotrack, "--entity", "no-such-thing").strip() == "(none)"
    assert json.loads(log(lotrack, "--json", "--entity", "no-such-thing")) == []
