"""The audit trail catches an edited, deleted or reordered event and a record changed
behind lotrack's back, naming what broke; on both databases."""

import pytest
from sqlalchemy import text

from lotrack import audit, db
from lotrack.errors import PermissionDenied
from lotrack.services import auth, users

PASSWORD = "correct-horse-42"


@pytest.fixture
def trail(database, make_user):
    make_user("qa.lee", "qa")
    make_user("pharm.chen", "pharmacist")
    with db.unit_of_work(database.engine) as session:
        admin = auth.authenticate(session, "admin", PASSWORD)
        users.deactivate_user(session, admin, "pharm.chen", "left the site")
        session.commit()
    return database


def problems(database):
    with db.unit_of_work(database.engine) as session:
        return audit.verify(session).problems


def raw(database, sql, **params):
    with database.engine.connect() as conn:
        conn.execute(text(sql), params)
        conn.commit()


def test_an_untouched_trail_verifies(trail):
    assert problems(trail) == []


def test_every_change_left_an_event_with_who_what_and_why(trail):
    with trail.engine.connect() as conn:
        rows = conn.execute(text("SELECT seq, username, entity, entity_id, action, reason "
                                 "FROM audit_events ORDER BY seq")).all()
    assert [tuple(r)[1:] for r in rows] == [
        ("admin", "user", "admin", "create", None),
        ("admin", "user", "qa.lee", "create", None),
        ("admin", "user", "pharm.chen", "create", None),
        ("admin", "user", "pharm.chen", "deactivate", "left the site"),
    ]
    assert [r.seq for r in rows] == [1, 2, 3, 4]


def test_an_edited_event_is_named(trail):
    raw(trail, "UPDATE audit_events SET reason = 'promoted' WHERE seq = 4")
    assert any("audit event 4" in p and "altered" in p for p in problems(trail))


def test_a_deleted_event_in_the_middle_is_named(trail):
    raw(trail, "DELETE FROM audit_events WHERE seq = 2")
    assert any("audit event 2 is missing" in p for p in problems(trail))


def test_a_deleted_last_event_is_found_through_the_chain_head(trail):
    raw(trail, "DELETE FROM audit_events WHERE seq = 4")
    found = problems(trail)
    assert any("removed from its end" in p for p in found)
    assert any("user pharm.chen differs" in p for p in found)


def test_reordered_events_break_the_chain(trail):
    raw(trail, "UPDATE audit_events SET seq = 99 WHERE seq = 3")
    raw(trail, "UPDATE audit_events SET seq = 3 WHERE seq = 2")
    raw(trail, "UPDATE audit_events SET seq = 2 WHERE seq = 99")
    assert problems(trail)


@pytest.mark.parametrize("sql", [
    "UPDATE users SET full_name = 'Someone Else' WHERE username = 'qa.lee'",
    "UPDATE users SET active = TRUE WHERE username = 'pharm.chen'",
    "UPDATE users SET password_hash = 'x' WHERE username = 'qa.lee'",
    "INSERT INTO user_roles (user_id, role) SELECT id, 'admin' FROM users "
    "WHERE username = 'qa.lee'",
])
def test_a_record_changed_with_raw_sql_is_named(trail, sql):
    raw(trail, sql)
    found = problems(trail)
    assert any(p.startswith("user ") and "changed outside lotrack" in p for p in found), found


def test_a_record_inserted_or_deleted_with_raw_sql_is_named(trail):
    raw(trail, "INSERT INTO users (username, full_name, password_hash, active, locked, "
               "failed_logins, created_at) VALUES ('ghost', 'G', 'x', TRUE, FALSE, 0, "
               "'2026-01-01 00:00:00')")
    raw(trail, "DELETE FROM user_roles WHERE user_id = (SELECT id FROM users "
               "WHERE username = 'pharm.chen')")
    raw(trail, "UPDATE audit_events SET entity_id = entity_id WHERE seq = 1")
    found = problems(trail)
    assert any("user ghost has no audit event" in p for p in found)


def test_five_failed_passwords_lock_the_account_even_though_each_command_failed(trail):
    for _ in range(5):
        with pytest.raises(PermissionDenied), db.unit_of_work(trail.engine) as session:
            auth.authenticate(session, "qa.lee", "wrong-password")
    with pytest.raises(PermissionDenied, match="locked"), db.unit_of_work(trail.engine) as session:
        auth.authenticate(session, "qa.lee", PASSWORD)
    with db.unit_of_work(trail.engine) as session:
        admin = auth.authenticate(session, "admin", PASSWORD)
        users.unlock_user(session, admin, "qa.lee", "identity confirmed")
        session.commit()
    with db.unit_of_work(trail.engine) as session:
        assert auth.authenticate(session, "qa.lee", PASSWORD).failed_logins == 0
        assert audit.verify(session).ok
    with trail.engine.connect() as conn:
        actions = conn.execute(text("SELECT action FROM audit_events WHERE entity_id = 'qa.lee' "
                                    "ORDER BY seq")).scalars().all()
    assert actions == ["create", "login_failed", "login_failed", "login_failed",
                       "login_failed", "locked", "unlock"]


def test_a_deactivated_user_cannot_sign_in_and_passwords_are_argon2_hashes(trail):
    with pytest.raises(PermissionDenied, match="deactivated"), db.unit_of_work(trail.engine) as session:
        auth.authenticate(session, "pharm.chen", PASSWORD)
    with trail.engine.connect() as conn:
        hashes = conn.execute(text("SELECT password_hash FROM users")).scalars().all()
    assert all(h.startswith("$argon2id$") and PASSWORD not in h for h in hashes)


def test_a_signature_in_the_login_transaction_still_needs_the_right_password(trail, monkeypatch):
    """A command checks a person's password once with argon2 (the slow part): the same
    password given again in the same transaction is not hashed again, a wrong one fails,
    a new transaction checks afresh, and a lock or deactivation still applies."""
    checks = []
    real = auth._password_matches
    monkeypatch.setattr(auth, "_password_matches",
                        lambda user, password: checks.append(user.username) or real(user, password))
    with db.unit_of_work(trail.engine) as session:
        qa = auth.authenticate(session, "qa.lee", PASSWORD)
        auth.reauthenticate(session, qa, PASSWORD, "released")
        auth.reauthenticate(session, qa, PASSWORD, "released")
        assert checks == ["qa.lee"]
        with pytest.raises(PermissionDenied, match=r"wrong password for qa\.lee"):
            auth.reauthenticate(session, qa, "not-the-password", "released")
    with db.unit_of_work(trail.engine) as session:
        auth.authenticate(session, "qa.lee", PASSWORD)
    assert checks == ["qa.lee", "qa.lee", "qa.lee"]
    with db.unit_of_work(trail.engine) as session:
        qa = auth.authenticate(session, "qa.lee", PASSWORD)
        admin = auth.authenticate(session, "admin", PASSWORD)
        users.deactivate_user(session, admin, "qa.lee", "left the site")
        with pytest.raises(PermissionDenied, match="deactivated"):
            auth.reauthenticate(session, qa, PASSWORD, "released")


def test_a_loaded_row_is_recorded_as_changed_without_a_flush_first(database, make_user):
    """record_row flushes only when a row's state needs it (a new row's id, a relationship
    reaching its foreign key): a vial taken out of its box through the relationship, and
    one changed column by column, are both recorded with their new state."""
    from trialkit import Trial

    from lotrack.services import vials

    trial = Trial.build(database, make_user)
    number = trial.lot()
    first, second = trial.serials(number)[:2]
    with db.unit_of_work(database.engine) as session:
        actor = auth.authenticate(session, "pharm.chen", PASSWORD)
        moved, marked = vials.get_vial(session, first), vials.get_vial(session, second)
        assert moved.location_id is not None
        before = moved.audit_state()
        moved.location, moved.position = None, None  # the foreign key follows at a flush
        event = audit.record_row(session, actor, moved, "moved", before, "test")
        before = marked.audit_state()
        marked.on_hold = True
        held = audit.record_row(session, actor, marked, "held", before, "test")
        session.commit()
    assert '"location_id":null' in event.after and '"on_hold":true' in held.after
    assert problems(database) == []
