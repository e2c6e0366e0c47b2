"""The site time zone recorded in the database: set by an administrator, a reason for any
change, every change audited, and a zone edited behind lotrack's back found by verify."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select, text

from lotrack import audit, db
from lotrack.errors import InvalidInput, PermissionDenied, RuleViolation
from lotrack.models import AuditEvent
from lotrack.services import auth, site_settings

PASSWORD = "correct-horse-42"


def act(database, username, action):
    with db.unit_of_work(database.engine) as session:
        result = action(session, auth.authenticate(session, username, PASSWORD))
        session.commit()
        return result


def set_tz(database, zone, reason=None, username="admin"):
    return act(database, username,
               lambda s, a: site_settings.set_site_time_zone(s, a, zone, reason))


def recorded(database) -> str | None:
    return db.check_schema_current(database.engine, site_settings.recorded_zone_name)


def setting_events(database) -> list[tuple[str, str, str | None, str | None, str | None]]:
    """(entity_id, action, before, after, reason) of every event of a setting."""
    events = AuditEvent.__table__.c
    with database.engine.connect() as conn:
        return [tuple(row) for row in conn.execute(
            select(events.entity_id, events.action, events.before, events.after, events.reason)
            .where(events.entity == "setting").order_by(events.seq))]


def test_a_new_database_has_no_zone_until_an_administrator_records_one(database, make_user):
    make_user("admin")
    assert recorded(database) is None
    set_tz(database, " Asia/Shanghai ")
    assert recorded(database) == "Asia/Shanghai"
    with db.unit_of_work(database.engine) as session:
        zone = site_settings.recorded_zone(session)
    assert zone is not None and (zone.zone.key, zone.changed_by) == ("Asia/Shanghai", "admin")
    [(key, action, before, after, reason)] = setting_events(database)
    assert (key, action, before, reason) == ("site_time_zone", "create", None, None)
    assert json.loads(after)["value"] == "Asia/Shanghai"


def test_only_an_administrator_sets_it(database, make_user):
    make_user("qa.lee", "qa")
    with pytest.raises(PermissionDenied, match="setting the site time zone needs the admin role"):
        set_tz(database, "Asia/Shanghai", username="qa.lee")
    assert recorded(database) is None and not setting_events(database)


def test_a_change_needs_a_reason_and_keeps_before_and_after(database, make_user):
    make_user("admin")
    set_tz(database, "Asia/Shanghai")
    with pytest.raises(InvalidInput, match="from Asia/Shanghai to Europe/Berlin needs a reason"):
        set_tz(database, "Europe/Berlin")
    with pytest.raises(RuleViolation, match="already Asia/Shanghai"):
        set_tz(database, "Asia/Shanghai", "again")
    with pytest.raises(InvalidInput, match=r"unknown time zone 'Nowhere/Else' \(use an IANA name"):
        set_tz(database, "Nowhere/Else", "typo")
    set_tz(database, "Europe/Berlin", " moved ")
    assert recorded(database) == "Europe/Berlin"
    _, (_, action, before, after, reason) = setting_events(database)
    assert (action, reason) == ("change", "moved")
    assert json.loads(before)["value"] == "Asia/Shanghai"
    assert json.loads(after)["value"] == "Europe/Berlin"
    with db.unit_of_work(database.engine) as session:
        report = audit.verify(session)
    assert report.ok, report.problems


def test_a_zone_changed_behind_lotrack_is_found_by_verify(database, make_user):
    make_user("admin")
    set_tz(database, "Asia/Shanghai")
    with database.engine.connect() as conn:
        conn.execute(text("UPDATE settings SET value = 'UTC'"))
        conn.commit()
    with db.unit_of_work(database.engine) as session:
        problems = audit.verify(session).problems
    assert problems == ["setting site_time_zone differs from its last audited state: "
                        "it was changed outside lotrack"]
