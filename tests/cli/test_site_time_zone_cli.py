"""The site time zone is the database's: `init` records it, every workstation works in it,
a workstation configured otherwise is refused, and only an administrator changes it."""

from __future__ import annotations

import json

from conftest import PASSWORD, Lotrack, Outcome

SHANGHAI = "Asia/Shanghai"
NO_TZ: dict[str, str | None] = {"LOTRACK_TZ": None}
EXCURSION = ("storage", "excursion", "SITE/FRZ-A", "--start", "2026-04-02T01:10",
             "--end", "2026-04-02T02:40", "--max-temp", "-52")


def events(lotrack: Lotrack, entity: str) -> list[dict]:
    trail = json.loads(lotrack.ok("audit", "log", "--json", "--limit", "100000", **NO_TZ))
    return [e for e in trail if e["entity"] == entity]


def refused(lotrack: Lotrack, *args: str, message: str, exit_code: int, **kwargs) -> Outcome:
    """Refused with one error line and the audit trail unchanged (read without LOTRACK_TZ,
    which the database's own zone may not agree with)."""
    before = lotrack.ok("audit", "log", "--json", "--limit", "100000", **NO_TZ)
    outcome = lotrack(*args, **kwargs)
    outcome.assert_one_error(message, exit_code)
    assert lotrack.ok("audit", "log", "--json", "--limit", "100000", **NO_TZ) == before
    return outcome


def with_freezer(lotrack: Lotrack, make_user) -> None:
    make_user("pharm.chen", "pharmacist")
    lotrack.ok("storage", "add", "SITE/FRZ-A", user="pharm.chen")


def test_init_records_the_zone_it_is_given_and_prints_it(empty_database, tmp_path):
    lotrack = Lotrack(empty_database.url, tmp_path / "home")
    out = lotrack.ok("init", "--admin", "admin", "--name", "Ada Admin", user=None,
                     LOTRACK_TZ=SHANGHAI, LOTRACK_PASSWORD=PASSWORD)
    assert "site time zone Asia/Shanghai" in out
    shown = json.loads(lotrack.ok("settings", "show", "--json", **NO_TZ))
    assert (shown["site_time_zone"], shown["recorded"], shown["changed_by"]) == (
        SHANGHAI, True, "admin")
    assert shown["workstation_time_zone"] is None and shown["conflict"] is None
    [created] = events(lotrack, "setting")
    assert (created["id"], created["action"], created["user"]) == ("site_time_zone", "create",
                                                                   "admin")
    assert created["after"]["value"] == SHANGHAI

    again = lotrack.ok("init", user=None, **NO_TZ)
    assert "already has users" in again
    assert "Site time zone: Asia/Shanghai (recorded in the database)" in again
    assert "Audit trail intact" in lotrack.ok("audit", "verify", **NO_TZ)


def test_the_installed_script_records_utc_by_default_and_refuses_another_tz(empty_database,
                                                                            tmp_path):
    lotrack = Lotrack(empty_database.url, tmp_path / "home")
    done = lotrack.script("init", "--admin", "admin", "--name", "Ada Admin", user=None,
                          LOTRACK_TZ=None, LOTRACK_PASSWORD=PASSWORD)
    assert done.exit_code == 0 and "site time zone UTC" in done.stdout, done.stderr
    done = lotrack.script("--tz", SHANGHAI, "audit", "log", **NO_TZ)
    done.assert_one_error("this database's site time zone is UTC; --tz says Asia/Shanghai: "
                          "leave --tz out or make it UTC", exit_code=2)
    done = lotrack.script("settings", "show", **NO_TZ)
    assert done.exit_code == 0 and "UTC (recorded in the database)" in done.stdout, done.stderr


def test_a_workstation_whose_zone_disagrees_is_refused_and_nothing_is_written(lotrack,
                                                                              make_user):
    with_freezer(lotrack, make_user)
    lotrack.ok("settings", "set-tz", SHANGHAI)
    # Lotrack.env sets LOTRACK_TZ=UTC: the workstation that forgot to follow the database.
    refused(lotrack, *EXCURSION, user="pharm.chen", exit_code=2,
            message="this database's site time zone is Asia/Shanghai; LOTRACK_TZ says UTC: "
                    "unset it or make it Asia/Shanghai")
    refused(lotrack, "--tz", "Europe/Paris", *EXCURSION, user="pharm.chen", exit_code=2,
            message="--tz says Europe/Paris: leave --tz out")
    assert not events(lotrack, "excursion")
    shown = json.loads(lotrack.ok("settings", "show", "--json"))  # shows, and says why
    assert shown["workstation_time_zone"] == "UTC" and "LOTRACK_TZ says UTC" in shown["conflict"]
    # A workstation that agrees, or says nothing, works in the database's zone.
    lotrack.ok(*EXCURSION, user="pharm.chen", LOTRACK_TZ=SHANGHAI)
    assert len(events(lotrack, "excursion")) == 1


def test_another_name_of_the_same_zone_agrees_with_the_database(lotrack, make_user):
    # PRC and Asia/Chongqing are links to Asia/Shanghai in the time zone database: the
    # same rules, the same days, so not a conflict; a zone with other rules still is.
    with_freezer(lotrack, make_user)
    lotrack.ok("settings", "set-tz", SHANGHAI, **NO_TZ)
    lotrack.ok(*EXCURSION, user="pharm.chen", LOTRACK_TZ="PRC")
    lotrack.ok("--tz", "Asia/Chongqing", *EXCURSION, user="pharm.chen")
    started = {e["after"]["started_at"] for e in events(lotrack, "excursion")}
    assert started == {"2026-04-01T17:10:00+00:00"}
    refused(lotrack, *EXCURSION, user="pharm.chen", exit_code=2, LOTRACK_TZ="Asia/Tokyo",
            message="LOTRACK_TZ says Asia/Tokyo")
    refused(lotrack, "settings", "set-tz", "PRC", exit_code=1, **NO_TZ,
            message="the site time zone is already Asia/Shanghai (PRC is another name for it)")


def test_without_a_configured_zone_typed_and_shown_times_are_the_databases(lotrack, make_user):
    with_freezer(lotrack, make_user)
    lotrack.ok("settings", "set-tz", SHANGHAI)
    lotrack.ok(*EXCURSION, user="pharm.chen", **NO_TZ)
    [excursion] = events(lotrack, "excursion")
    # 01:10 in Shanghai (UTC+8) is 17:10 UTC the day before.
    assert excursion["after"]["started_at"] == "2026-04-01T17:10:00+00:00"
    assert excursion["after"]["ended_at"] == "2026-04-01T18:40:00+00:00"
    shown = lotrack.ok("audit", "log", "--entity", "excursion", **NO_TZ)
    assert " CST " in shown and " UTC " not in shown


def test_a_database_without_a_recorded_zone_keeps_the_workstations(lotrack, make_user):
    with_freezer(lotrack, make_user)
    lotrack.ok(*EXCURSION, user="pharm.chen", LOTRACK_TZ=SHANGHAI)
    lotrack.ok(*EXCURSION, user="pharm.chen")  # LOTRACK_TZ=UTC
    started = [e["after"]["started_at"] for e in events(lotrack, "excursion")]
    assert started == ["2026-04-01T17:10:00+00:00", "2026-04-02T01:10:00+00:00"]
    shown = json.loads(lotrack.ok("settings", "show", "--json"))
    assert (shown["site_time_zone"], shown["recorded"]) == ("UTC", False)


def test_set_tz_is_for_administrators_needs_a_reason_to_change_and_is_audited(lotrack,
                                                                              make_user):
    make_user("pharm.chen", "pharmacist")
    refused(lotrack, "settings", "set-tz", SHANGHAI, user="pharm.chen", exit_code=3,
            message="setting the site time zone needs the admin role")
    refused(lotrack, "settings", "set-tz", "Mars/Olympus", exit_code=2,
            message="unknown time zone 'Mars/Olympus' (use an IANA name such as Asia/Shanghai)")
    # A name longer than a file name may be: the operating system refused it (the sweep's find).
    refused(lotrack, "settings", "set-tz", "x" * 1000, exit_code=2, message="unknown time zone")
    assert "Site time zone recorded: Asia/Shanghai." in lotrack.ok(
        "settings", "set-tz", SHANGHAI, **NO_TZ)  # the first: no reason needed
    refused(lotrack, "settings", "set-tz", SHANGHAI, exit_code=1, **NO_TZ,
            message="the site time zone is already Asia/Shanghai")
    refused(lotrack, "settings", "set-tz", "UTC", exit_code=2, **NO_TZ,
            message="changing the site time zone from Asia/Shanghai to UTC needs a reason")
    refused(lotrack, "settings", "set-tz", "UTC", "--reason", " ", exit_code=2, **NO_TZ,
            message="needs a reason")
    lotrack.ok("settings", "set-tz", "UTC", "--reason", "the site runs on UTC", **NO_TZ)
    created, changed = events(lotrack, "setting")
    assert (created["action"], changed["action"]) == ("create", "change")
    assert (changed["before"]["value"], changed["after"]["value"]) == (SHANGHAI, "UTC")
    assert changed["reason"] == "the site runs on UTC" and changed["user"] == "admin"
    done = lotrack.script("audit", "verify", **NO_TZ)
    assert done.exit_code == 0 and "Audit trail intact" in done.stdout, done.stderr


def test_the_demo_records_its_zone_for_those_who_explore_it_later(database, tmp_path):
    from lotrack.demo import DEMO_PASSWORD, SITE_TZ, supply
    from lotrack.demo.core import Demo

    supply.create_staff(Demo(database.engine, tmp_path, lambda line: None))
    lotrack = Lotrack(database.url, tmp_path / "home")
    explorer = {"LOTRACK_TZ": None, "LOTRACK_PASSWORD": DEMO_PASSWORD}
    shown = json.loads(lotrack.ok("settings", "show", "--json", user="monitor.sun", **explorer))
    assert shown["site_time_zone"] == SITE_TZ.key == SHANGHAI and shown["recorded"]
    log = lotrack.ok("audit", "log", "--entity", "user", user="monitor.sun", **explorer)
    assert "2026-01-05 09:00 CST" in log
