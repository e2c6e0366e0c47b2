"""`lotrack dispense`, `lotrack administer`, `lotrack dose ...`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from lotrack.cli.context import App, emit, output_options, pass_app, read_password

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from lotrack.models import User
    from lotrack.render.labels.output import Staged


@click.command()
@click.argument("subject")
@click.option("--vial", "serials", multiple=True, metavar="SERIAL",
              help="Vial serial; repeat when the group's dose is several vials.")
@click.option("--scan", "scans", multiple=True, metavar="TEXT",
              help="What the scanner read from a vial label (GS1 or serial); repeatable.")
@click.option("--gs", "substitute", metavar="TEXT",
              help="What the scanner sends for the GS1 separator (default: ASCII 29).")
@click.option("--label", "label_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the dose label PDF (default: dose-labels/DOSE.pdf).")
@click.option("--no-label", is_flag=True, help="Do not print the dose label now.")
@click.option("--at", "at_text", metavar="DATETIME", help="Dispensing time (default: now).")
@click.option("--verified-by", "verifier", metavar="USER",
              help="Second person (pharmacist or investigator) who verifies the dose.")
@click.option("--deviation", metavar="REASON", help="Reason for dispensing outside the window.")
@click.option("--password-stdin", is_flag=True,
              help="Read your signing password, then the verifier's, from stdin.")
@click.option("--site", metavar="SITE", envvar="LOTRACK_SITE",
              help="Site whose stock a proposal comes from [env LOTRACK_SITE; default: the one "
                   "site holding dispensable stock].")
@output_options
@pass_app
def dispense(app: App, subject: str, serials: tuple[str, ...], scans: tuple[str, ...],
             substitute: str | None, label_path: Path | None, no_label: bool,
             at_text: str | None, verifier: str | None, deviation: str | None,
             password_stdin: bool, site: str | None, as_json: bool) -> None:
    """Dispense SUBJECT's next due perfusion from the given vial(s).

    Without --vial or --scan, propose the vial(s) to use, first expiry first out among
    the confirmed, dispensable vials of the group's product at the site, with their
    storage position; nothing is dispensed until the vials are scanned.

    Checks, in one transaction: the participant is enrolled and in an open cycle, the
    perfusion is the next one due and inside its window (or --deviation is given), every
    vial is in stock, released, not expired by the dose's use-by time, not on hold or
    recalled, and of the group's product. The verifier's password comes from
    LOTRACK_VERIFIER_PASSWORD, stdin or a prompt.

    The dose label (template labels/dose.toml) is written with the dose and its print is
    recorded in the same transaction.

    Example: lotrack dispense IUA-001 --scan "]d2010950600013435210EXO-2601<GS>1727013121V00000127"
    --gs "<GS>" --verified-by pharm.li
    """
    from lotrack.errors import InvalidInput
    from lotrack.models.base import utcnow
    from lotrack.schemas.times import parse_datetime
    from lotrack.services import dosing

    at = parse_datetime(at_text, app.site_tz, "--at") if at_text else utcnow()
    if not serials and not scans:
        _propose(app, subject, at, site, as_json)
        return
    if not verifier:
        raise InvalidInput("give the second person who verifies the dose: --verified-by USER")
    request = dosing.DispenseRequest(subject, tuple(s.strip() for s in serials), at, verifier,
                                     deviation, scans, substitute or app.settings.gs_substitute)
    password = read_password(password_stdin, "Your password (signature: dispensed)")
    verifier_password = read_password(password_stdin, f"Password of {verifier} (verification)",
                                      env="LOTRACK_VERIFIER_PASSWORD")
    tz = app.site_tz

    def action(session: Session, actor: User) -> tuple[object, Staged | None]:
        dose = dosing.dispense_perfusion(session, actor, request, password, verifier_password, tz)
        staged = None if no_label else _stage_dose_label(app, session, actor, dose.dose_code,
                                                         label_path)
        return dose, staged

    dose, staged = app.run(action)
    _echo_dose(app, dose)
    if staged is not None:
        click.echo(f"Dose label: {staged.commit()[0]}")


def _propose(app: App, subject: str, at: object, site: str | None, as_json: bool) -> None:
    from lotrack.services import dosing

    data = app.read(lambda s, actor: dosing.propose_vials(s, actor, subject, at, site,
                                                          app.site_tz))

    def text() -> str:
        lines = [f"Next due for {data['subject']}: cycle {data['cycle']} perfusion "
                 f"{data['perfusion']} (group {data['group']}: {data['vials_needed']} vial(s) of "
                 f"{data['product']}).",
                 f"First expiry first out at {data['site']}:"]
        lines += [f"  {v['serial']}  lot {v['lot']}  expires {v['expiry']}  at {v['location']} "
                  f"position {v['position']}" for v in data["proposed"]]
        lines.append(f"Scan each vial to dispense: lotrack dispense {data['subject']} --scan ... "
                     "--verified-by USER")
        return "\n".join(lines)

    emit(data, as_json, text)


def _stage_dose_label(app: App, session: Session, actor: User, dose_code: str,
                      label_path: Path | None) -> Staged:
    from lotrack.render.labels.layout import layout
    from lotrack.render.labels.output import stage_labels
    from lotrack.services import labels

    template = labels.load_template(None, "dose")
    data = labels.dose_labels(session, [dose_code], app.site_tz)
    printed = labels.record_prints(session, actor, "dose", data, template, "pdf", 1, None)
    out = label_path or Path("dose-labels") / f"{dose_code}.pdf"
    return stage_labels(out, "pdf", [layout(template, printed[0])], 1, template, None,
                        f"Dose label {dose_code}", app.settings.label_watermark)


def _echo_dose(app: App, dose: object) -> None:
    from lotrack.render.tables import site_time

    tz = app.site_tz
    d = dose
    window = "in window" if d.in_window else f"OUTSIDE window ({d.deviation})"  # type: ignore[attr-defined]
    click.echo(
        f"Dose {d.dose_code}: perfusion {d.perfusion} at {d.hours_since_surgery:g} h after "  # type: ignore[attr-defined]
        f"surgery (POD {d.post_op_day}), {window}; use by {site_time(d.use_by, tz)}.")  # type: ignore[attr-defined]


@click.command()
@click.argument("dose_code", metavar="DOSE")
@click.option("--at", "at_text", metavar="DATETIME", help="Administration time (default: now).")
@click.option("--volume-ml", type=float, help="Volume perfused, mL.")
@pass_app
def administer(app: App, dose_code: str, at_text: str | None, volume_ml: float | None) -> None:
    """Record that DOSE was perfused (investigator); refused after its use-by time.

    Example: lotrack administer D000001 --at 2026-03-10T10:05 --volume-ml 1.0
    """
    from lotrack.models.base import utcnow
    from lotrack.schemas.times import parse_datetime
    from lotrack.services import dosing

    at = parse_datetime(at_text, app.site_tz, "--at") if at_text else utcnow()
    dose = app.run(lambda s, actor: dosing.administer(s, actor, dose_code, at, volume_ml))
    click.echo(f"Dose {dose.dose_code} administered.")


@click.group()
def dose() -> None:
    """Doses that will not be given: wasted or returned."""


@dose.command()
@click.argument("dose_code", metavar="DOSE")
@click.option("--reason", required=True)
@pass_app
def waste(app: App, dose_code: str, reason: str) -> None:
    """Record DOSE wasted (for example past its use-by time); its perfusion is due again.

    Example: lotrack dose waste D000004 --reason "use-by time passed"
    """
    from lotrack.services import dosing

    app.run(lambda s, actor: dosing.close_unadministered(s, actor, dose_code, "wasted", reason))
    click.echo(f"Dose {dose_code} recorded wasted.")


@dose.command("return")
@click.argument("dose_code", metavar="DOSE")
@click.option("--reason", required=True)
@pass_app
def return_(app: App, dose_code: str, reason: str) -> None:
    """Record DOSE returned to the pharmacy unused; it is not re-entered into stock.

    Example: lotrack dose return D000004 --reason "procedure postponed"
    """
    from lotrack.services import dosing

    app.run(lambda s, actor: dosing.close_unadministered(s, actor, dose_code, "returned", reason))
    click.echo(f"Dose {dose_code} recorded returned.")
