"""`lotrack participant ...`, `lotrack surgery record`, `lotrack hysteroscopy record`."""

from __future__ import annotations

import click

from lotrack.cli.context import App, emit, output_options, pass_app, read_password


@click.group()
def participant() -> None:
    """Participants: enrolment with eligibility, withdrawal, details, schedule."""


@participant.command()
@click.argument("subject")
@click.option("--group", "group_code", required=True, help="Group code from the protocol.")
@click.option("--consented", required=True, metavar="DATE", help="Date of informed consent.")
@click.option("--sex", type=click.Choice(["F", "M"], case_sensitive=False))
@click.option("--birth-date", metavar="DATE", help="For the age at consent (only the age is kept).")
@click.option("--iua-score", type=int, help="2015 Chinese IUA score (9-28 eligible).")
@click.option("--amh", type=float, help="AMH, ng/mL.")
@click.option("--afc", type=int, help="Antral follicle count.")
@click.option("--platelets", type=float, help="Platelets, x10^9/L.")
@click.option("--aptt", type=float, help="aPTT as a multiple of the upper limit of normal.")
@click.option("--hba1c", type=float, help="HbA1c, %.")
@click.option("--answer", "answers", multiple=True, metavar="CODE=yes|no",
              help="Answer to an inclusion or exclusion question; repeat for each.")
@click.option("--password-stdin", is_flag=True, help="Read the signing password from stdin.")
@pass_app
def enroll(app: App, subject: str, group_code: str, consented: str, sex: str | None,
           birth_date: str | None, iua_score: int | None, amh: float | None, afc: int | None,
           platelets: float | None, aptt: float | None, hba1c: float | None,
           answers: tuple[str, ...], password_stdin: bool) -> None:
    """Enrol SUBJECT in a group after checking eligibility; signed by the investigator.

    Every failed or unanswered criterion is listed. `lotrack protocol show` lists the
    question codes.

    Example: lotrack participant enroll S-001 --group LOW --consented 2026-03-02 --sex F
    --birth-date 1992-05-01 --iua-score 14 --amh 2.1 --platelets 210 --aptt 1.0 --hba1c 5.2
    --answer fertility_desire=yes ...
    """
    from lotrack.schemas import parse
    from lotrack.schemas.participants import Screening, parse_answers
    from lotrack.services import participants

    screening = parse(Screening, {
        "sex": sex, "birth_date": birth_date, "consented": consented, "iua_score": iua_score,
        "amh": amh, "afc": afc, "platelets": platelets, "aptt": aptt, "hba1c": hba1c,
        "answers": parse_answers(answers)}, what="screening values")
    password = read_password(password_stdin, "Password (signature)")
    enrolled = app.run(lambda s, actor: participants.enroll(
        s, actor, subject, group_code, screening.candidate(), password))
    click.echo(f"Enrolled {enrolled.subject_id} in group {enrolled.group_code}.")


@participant.command("list")
@output_options
@pass_app
def list_(app: App, as_json: bool) -> None:
    """List participants with group and status.

    Example: lotrack participant list --json
    """
    from lotrack.render.tables import table
    from lotrack.services.participant_views import participant_rows

    rows = app.read(participant_rows)
    emit(rows, as_json, lambda: table(rows))


@participant.command()
@click.argument("subject")
@output_options
@pass_app
def show(app: App, subject: str, as_json: bool) -> None:
    """Everything about SUBJECT: group, status, consent, enrolment signature, surgeries,
    follow-up hysteroscopies, and each cycle's doses with vials and lots.

    Example: lotrack participant show S-001 --json
    """
    from lotrack.render.tables import record, site_time, table
    from lotrack.services.participant_views import participant_detail

    data = app.read(lambda s, actor: participant_detail(s, actor, subject))
    tz = app.site_tz

    def text() -> str:
        status = str(data["status"])
        if data["status"] == "withdrawn":
            status += f" on {site_time(data['withdrawn_at'], tz)}: {data['withdrawal_reason']}"
        sig = data["enrolment_signature"]
        signed = (f"{sig['name']} ({sig['username']}), {site_time(sig['signed_at'], tz)}, "
                  f"\"{sig['meaning']}\"" if sig else "(none)")
        parts = [record({
            "subject": data["subject"], "group": f"{data['group']} ({data['group_name']})",
            "product": data["product"], "status": status, "consented": data["consented"],
            "age at consent": data["age_at_consent"], "protocol": data["protocol"],
            "enrolled": site_time(data["enrolled_at"], tz), "signed": signed})]
        parts.append("Surgeries\n" + table(
            [{"at": site_time(s["at"], tz), "IUA score": s["iua_score"]}
             for s in data["surgeries"]]))
        parts.append("Follow-up hysteroscopies\n" + table(
            [{"cycle": h["cycle"], "at": site_time(h["at"], tz), "recurrence": h["recurrence"]}
             for h in data["hysteroscopies"]]))
        for cycle in data["cycles"]:
            parts.append(f"Cycle {cycle['cycle']} (surgery {site_time(cycle['surgery_at'], tz)})"
                         "\n" + table([{
                             "dose": d["dose"], "perfusion": d["perfusion"],
                             "status": d["status"],
                             "dispensed": site_time(d["dispensed_at"], tz),
                             "h since surgery": d["hours_since_surgery"], "vials": d["vials"],
                             "lots": d["lots"], "deviation": d["deviation"]}
                             for d in cycle["doses"]], empty="(no doses)"))
        return "\n\n".join(parts)

    emit(data, as_json, text)


@participant.command()
@click.argument("subject")
@output_options
@pass_app
def schedule(app: App, subject: str, as_json: bool) -> None:
    """Each perfusion of each cycle of SUBJECT: target, window, status, dose, vials, lots.

    Example: lotrack participant schedule S-001
    """
    from lotrack.render.tables import site_time, table
    from lotrack.services.schedule import participant_schedule

    rows = app.read(lambda s, actor: participant_schedule(s, actor, subject))
    tz = app.site_tz

    def text() -> str:
        shown = [{"cycle": r["cycle"], "perfusion": r["perfusion"],
                  "target": site_time(r.get("target"), tz), "status": r["status"],
                  "dose": r.get("dose"), "h since surgery": r.get("hours_since_surgery"),
                  "vials": r.get("vials"), "lots": r.get("lots"),
                  "deviation": r.get("deviation")} for r in rows]
        return table(shown)

    emit(rows, as_json, text)


@participant.command()
@click.argument("subject")
@click.option("--reason", required=True, help="Why the participant is withdrawn.")
@pass_app
def withdraw(app: App, subject: str, reason: str) -> None:
    """Withdraw SUBJECT: no further dose can be dispensed.

    Example: lotrack participant withdraw S-007 --reason "withdrew consent"
    """
    from lotrack.services import participants

    app.run(lambda s, actor: participants.withdraw(s, actor, subject, reason))
    click.echo(f"Participant {subject} withdrawn.")


@click.group()
def surgery() -> None:
    """Hysteroscopic adhesiolysis: opens a treatment cycle."""


@surgery.command("record")
@click.argument("subject")
@click.option("--at", "at_text", required=True, metavar="DATETIME", help="When it was performed.")
@click.option("--iua-score", type=int, help="IUA score found at surgery.")
@pass_app
def record_surgery(app: App, subject: str, at_text: str, iua_score: int | None) -> None:
    """Record an adhesiolysis for SUBJECT; the first opens cycle 1, a repeat after a
    recurrence opens cycle 2.

    Example: lotrack surgery record S-001 --at 2026-03-09T09:30 --iua-score 16
    """
    from lotrack.schemas.times import parse_datetime
    from lotrack.services import participants

    at = parse_datetime(at_text, app.site_tz, "--at")
    cycle = app.run(lambda s, actor: participants.record_surgery(
        s, actor, subject, at, iua_score, app.site_tz))
    click.echo(f"Surgery recorded for {subject}; cycle {cycle.number} opened.")


@click.group()
def hysteroscopy() -> None:
    """Follow-up hysteroscopy (about 1 month after surgery)."""


@hysteroscopy.command("record")
@click.argument("subject")
@click.option("--at", "at_text", required=True, metavar="DATETIME")
@click.option("--recurrence", type=click.Choice(["yes", "no"]), required=True,
              help="Did adhesions recur?")
@pass_app
def record_hysteroscopy(app: App, subject: str, at_text: str, recurrence: str) -> None:
    """Record the follow-up hysteroscopy of SUBJECT's current cycle.

    Example: lotrack hysteroscopy record S-001 --at 2026-04-08T10:00 --recurrence no
    """
    from lotrack.schemas.times import parse_datetime
    from lotrack.services import participants

    at = parse_datetime(at_text, app.site_tz, "--at")
    app.run(lambda s, actor: participants.record_hysteroscopy(
        s, actor, subject, at, recurrence == "yes"))
    click.echo(f"Hysteroscopy recorded for {subject}: recurrence {recurrence}.")

