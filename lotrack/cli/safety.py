"""`lotrack ae ...` (adverse events) and `lotrack export sdtm`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from lotrack.cli.context import App, emit, output_options, pass_app

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from lotrack.models import User

RELATEDNESS = ("unrelated", "unlikely", "possible", "probable", "definite")
OUTCOMES = ("recovered", "recovering", "not_recovered", "recovered_with_sequelae", "fatal",
            "unknown")


@click.group()
def ae() -> None:
    """Adverse events graded by CTCAE v5.0: record, correct, list, show."""


def _ae_line(event: Any) -> str:
    coded = (f"CTCAE {event.ctcae_term} ({event.system_organ_class})" if not event.needs_coding
             else "verbatim term, flagged for coding")
    return (f"{event.ae_code}: {event.verbatim_term}, grade {event.grade}"
            f"{', serious' if event.serious else ''}, {event.relatedness}, {event.outcome}; "
            f"{coded}")


@ae.command("record")
@click.argument("subject")
@click.option("--term", required=True, help="CTCAE v5.0 term, or the verbatim term.")
@click.option("--grade", required=True, type=int, help="CTCAE grade 1-5.")
@click.option("--onset", required=True, metavar="DATE", help="Onset date (site calendar).")
@click.option("--serious", is_flag=True, help="A serious adverse event (ICH E2A).")
@click.option("--relatedness", type=click.Choice(RELATEDNESS),
              help="Relation to the investigational product [default: possible, until "
                   "assessed].")
@click.option("--outcome", type=click.Choice(OUTCOMES),
              help="[default: recovered with --resolved, fatal at grade 5, else not_recovered]")
@click.option("--resolved", metavar="DATE", help="Date the event resolved.")
@click.option("--action", metavar="TEXT",
              help="Action taken; start with a CDISC term such as 'dose not changed' or "
                   "'drug withdrawn' to fill SDTM AEACN.")
@pass_app
def record(app: App, subject: str, term: str, grade: int, onset: str, serious: bool,
           relatedness: str | None, outcome: str | None, resolved: str | None,
           action: str | None) -> None:
    """Record an adverse event of SUBJECT (investigators).

    A term that is not in the CTCAE v5.0 term file is kept verbatim and flagged for
    coding. Refused: a grade the term does not have, an onset before consent or in the
    future, a resolution before onset.

    Example: lotrack ae record IUA-003 --term "Pelvic pain" --grade 1 --onset 2026-03-15
    --relatedness possible --resolved 2026-03-16 --action "dose not changed"
    """
    from lotrack.schemas import parse
    from lotrack.schemas.safety import AdverseEventIn
    from lotrack.services import adverse_events

    data = {"term": term, "grade": grade, "onset": onset, "serious": serious,
            "relatedness": relatedness, "outcome": outcome, "resolved": resolved,
            "action": action}
    data_in = parse(AdverseEventIn, {k: v for k, v in data.items() if v is not None},
                    what="adverse event")
    event = app.run(lambda s, actor: adverse_events.record_adverse_event(
        s, actor, subject, data_in, app.site_tz))
    click.echo(f"Recorded {_ae_line(event)}.")
    if relatedness is None:
        click.echo("Relatedness not given: recorded as possible until assessed "
                   f"(lotrack ae update {event.ae_code} --relatedness ... --reason ...).")


@ae.command("update")
@click.argument("code", metavar="AE")
@click.option("--reason", required=True, help="Why the record is corrected (kept in the audit "
                                              "trail with the old and new values).")
@click.option("--term")
@click.option("--grade", type=int)
@click.option("--onset", metavar="DATE")
@click.option("--serious/--not-serious", default=None)
@click.option("--relatedness", type=click.Choice(RELATEDNESS))
@click.option("--outcome", type=click.Choice(OUTCOMES))
@click.option("--resolved", metavar="DATE|none", help="Resolution date; 'none' clears it.")
@click.option("--action", metavar="TEXT", help="Action taken; an empty text clears it.")
@pass_app
def update(app: App, code: str, reason: str, term: str | None, grade: int | None,
           onset: str | None, serious: bool | None, relatedness: str | None,
           outcome: str | None, resolved: str | None, action: str | None) -> None:
    """Correct adverse event AE (investigators); a reason is required.

    Only the fields given change; a resolution date given alone marks the event
    recovered.

    Example: lotrack ae update AE00002 --grade 2 --reason "re-graded: oral analgesic needed"
    """
    from lotrack.schemas import parse
    from lotrack.schemas.safety import AdverseEventChange
    from lotrack.services import adverse_events

    given: dict[str, object] = {"reason": reason}
    for name, value in (("term", term), ("grade", grade), ("onset", onset),
                        ("serious", serious), ("relatedness", relatedness),
                        ("outcome", outcome), ("action", action)):
        if value is not None:
            given[name] = value
    if resolved is not None:
        given["resolved"] = None if resolved.strip().lower() == "none" else resolved
    change = parse(AdverseEventChange, given, what="adverse event correction")
    event = app.run(lambda s, actor: adverse_events.update_adverse_event(
        s, actor, code, change, app.site_tz))
    click.echo(f"Corrected {_ae_line(event)}.")


@ae.command("list")
@click.option("--subject", help="Only this participant's events.")
@click.option("--lot", "lot_number",
              help="Only events of participants who received this lot, from their first dose "
                   "of it.")
@click.option("--grade-min", type=int, help="Only events of this grade or worse.")
@output_options
@pass_app
def list_(app: App, subject: str | None, lot_number: str | None, grade_min: int | None,
          as_json: bool) -> None:
    """List adverse events, oldest onset first, with the lots received before onset.

    Example: lotrack ae list --lot EXO-2601 --grade-min 2
    """
    from lotrack.render.tables import table
    from lotrack.services import adverse_events

    rows = app.read(lambda s, actor: adverse_events.list_adverse_events(
        s, actor, app.site_tz, subject, lot_number, grade_min))
    emit(rows, as_json, lambda: table(
        [{**r, "term": r["term"] + (" (to code)" if r["needs_coding"] else "")} for r in rows],
        ["ae", "subject", "onset", "term", "ctcae_term", "grade", "serious", "relatedness",
         "outcome", "resolved", "lots_before_onset"]))


@ae.command("show")
@click.argument("code", metavar="AE")
@output_options
@pass_app
def show(app: App, code: str, as_json: bool) -> None:
    """One adverse event: coding, grade, dates, lots received before onset, and every
    correction with old and new values and the reason.

    Example: lotrack ae show AE00001 --json
    """
    from lotrack.render.tables import record as record_text
    from lotrack.render.tables import site_time, table
    from lotrack.services import adverse_events

    tz = app.site_tz
    data = app.read(lambda s, actor: adverse_events.adverse_event_detail(s, actor, code, tz))

    def text() -> str:
        coded = (f"{data['ctcae_term']} ({data['soc']})" if not data["needs_coding"]
                 else "(needs coding)")
        head = record_text({
            "adverse event": data["ae"], "subject": data["subject"], "term": data["term"],
            f"CTCAE v{data['ctcae_version']}": coded, "grade": data["grade"],
            "serious": data["serious"], "relatedness": data["relatedness"],
            "outcome": data["outcome"], "onset": data["onset"], "resolved": data["resolved"],
            "action taken": data["action"], "lots before onset": data["lots_before_onset"],
            "recorded": f"{site_time(data['recorded_at'], tz)} by {data['recorded_by']}"})
        history = table([{
            "at": site_time(h["at"], tz), "user": h["user"], "action": h["action"],
            "reason": h["reason"],
            "changes": "; ".join(f"{k}: {v['old']!r} -> {v['new']!r}"
                                 for k, v in h["changes"].items())}
            for h in data["history"]])
        return f"{head}\n\nHistory\n{history}"

    emit(data, as_json, text)


@click.group()
def export() -> None:
    """Data exports for the sponsor's data management."""


@export.command("sdtm")
@click.option("--out", "out_dir", required=True,
              type=click.Path(file_okay=False, path_type=Path), help="Folder to write into.")
@pass_app
def sdtm(app: App, out_dir: Path) -> None:
    """Write CDISC SDTM-shaped CSV files: EX (exposure), AE (adverse events), DA (drug
    accountability), and SUPPEX, SUPPDA for the values SDTM keeps outside them.

    Dates and times are the site's local clock time (ISO 8601, no offset), as collected.

    Example: lotrack export sdtm --out ./sdtm
    """
    from lotrack.db import retrying
    from lotrack.render.sdtm import write_records
    from lotrack.services import sdtm as service

    tz = app.site_tz

    def checked(session: Session, actor: User) -> User:
        service.require_exporter(actor)
        return actor

    # Signing in (which refreshes the login session) and the role check commit first; the
    # records are then read and written as they come, in one read-only transaction of their
    # own: one snapshot of the trial (REPEATABLE READ on PostgreSQL, where READ COMMITTED
    # would let the doses and the adverse events be read at different commits; an SQLite
    # transaction is one snapshot already). Should it have to run again, it rewrites every
    # file from the start, and the files take their names only once all is written.
    actor = app.read(checked)
    engine = app.engine()
    if engine.dialect.name == "postgresql":
        engine = engine.execution_options(isolation_level="REPEATABLE READ",
                                          postgresql_readonly=True)
    counts = retrying(engine, lambda s: write_records(
        out_dir, service.DATASETS, service.sdtm_records(s, actor, tz)))
    listed = ", ".join(f"{name} {count}" for name, count in counts.items())
    click.echo(f"Wrote {len(counts)} files to {out_dir}/ ({listed} rows); times are local "
               f"site time ({tz.key}).")
