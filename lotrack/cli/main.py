"""The root command: global options, lazy subcommands, and the one place where domain
errors become `Error: ...` lines and exit codes."""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

from lotrack import __version__
from lotrack.errors import LotrackError

# Subcommands load on first use so `lotrack --help` imports no database code.
COMMANDS = {
    "init": "lotrack.cli.setup:init",
    "db": "lotrack.cli.setup:db",
    "user": "lotrack.cli.users:user",
    "login": "lotrack.cli.session:login",
    "logout": "lotrack.cli.session:logout",
    "whoami": "lotrack.cli.session:whoami",
    "audit": "lotrack.cli.audit:audit",
    "demo": "lotrack.cli.demo:demo",
    "product": "lotrack.cli.lots:product",
    "spec": "lotrack.cli.lots:spec",
    "lot": "lotrack.cli.lots:lot",
    "storage": "lotrack.cli.storage:storage",
    "vial": "lotrack.cli.storage:vial",
    "report": "lotrack.cli.reports:report",
    "protocol": "lotrack.cli.protocols:protocol",
    "participant": "lotrack.cli.participants:participant",
    "surgery": "lotrack.cli.participants:surgery",
    "hysteroscopy": "lotrack.cli.participants:hysteroscopy",
    "dispense": "lotrack.cli.dosing:dispense",
    "administer": "lotrack.cli.dosing:administer",
    "dose": "lotrack.cli.dosing:dose",
    "label": "lotrack.cli.labels:label",
    "scan": "lotrack.cli.labels:scan",
    "trace": "lotrack.cli.trace:trace",
    "ae": "lotrack.cli.safety:ae",
    "export": "lotrack.cli.safety:export",
    "shipment": "lotrack.cli.shipments:shipment",
    "settings": "lotrack.cli.settings:settings",
}

SHORT_HELP = {
    "init": "Create or upgrade the database and its first administrator.",
    "db": "Database migrations: upgrade, downgrade, current; SQLite backup and restore.",
    "user": "User accounts and roles.",
    "login": "Start a login session.",
    "logout": "End the login session.",
    "whoami": "Show who is logged in.",
    "audit": "Read and verify the audit trail.",
    "demo": "Build the whole demo trial in a fresh SQLite database.",
    "product": "Products: active substance, placebo, vehicles.",
    "spec": "QC specifications, versioned per product.",
    "lot": "GMP lots: register, QC, release, hold, recall, destroy, receive.",
    "storage": "Storage locations and temperature excursions.",
    "vial": "Vials: list, show, move.",
    "report": "Documents: CoA, accountability, custody, consistency, safety, manifest; verify.",
    "protocol": "Protocol versions: groups, treatment cycle, eligibility.",
    "participant": "Participants: enrol, list, show, withdraw, schedule.",
    "surgery": "Record an adhesiolysis (opens a treatment cycle).",
    "hysteroscopy": "Record the follow-up hysteroscopy.",
    "dispense": "Dispense a participant's next due perfusion.",
    "administer": "Record a dose perfused.",
    "dose": "Record a dose wasted or returned.",
    "label": "Print vial, box and patient-dose labels (GS1 barcodes).",
    "scan": "Identify a scanned barcode and check it against the database.",
    "trace": "Forward and backward traces: lot, vial, participant, adverse event.",
    "ae": "Adverse events (CTCAE v5.0): record, correct, list, show.",
    "export": "Data exports: CDISC SDTM EX, AE and DA.",
    "shipment": "Shipments to the site: dispatch, receipt, confirmation by scan, manifest.",
    "settings": "Site settings kept in the database: the site time zone.",
}



class LotrackGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(COMMANDS))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in COMMANDS:
            module, attr = COMMANDS[name].split(":")
            return getattr(importlib.import_module(module), attr)
        return super().get_command(ctx, name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Help lists commands from static text, so --help imports none of them.
        rows = [(name, SHORT_HELP.get(name, "")) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except LotrackError as exc:
            raise _click_error(str(exc), exc.exit_code) from None
        except Exception as exc:
            if type(exc).__module__.startswith("sqlalchemy"):
                # A database failure no service anticipated: still one line, no traceback.
                detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
                raise _click_error(f"database error: {detail}", 5) from None
            raise


def _click_error(message: str, exit_code: int) -> click.ClickException:
    error = click.ClickException(message)
    error.exit_code = exit_code
    return error


@click.group(cls=LotrackGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="lotrack")
@click.option("--db", "db_url", metavar="URL", envvar="LOTRACK_DB",
              help="SQLAlchemy database URL [env LOTRACK_DB; default sqlite:///lotrack.db].")
@click.option("--tz", "site_tz", metavar="ZONE", envvar="LOTRACK_TZ",
              help="Site time zone for a database that has none recorded; must agree with "
                   "the database's otherwise [env LOTRACK_TZ; default UTC].")
@click.pass_context
def cli(ctx: click.Context, db_url: str | None, site_tz: str | None) -> None:
    """lotrack: lot and dosing traceability for a GMP cell-derived biologic in a clinical trial.

    Example: lotrack demo --out ./lotrack-demo
    """
    from click.core import ParameterSource

    from lotrack.cli.context import App
    from lotrack.config import Settings

    given_by = ("LOTRACK_TZ" if ctx.get_parameter_source("site_tz") is ParameterSource.ENVIRONMENT
                else "--tz")
    try:
        ctx.obj = App(Settings.from_env(db_url, site_tz, given_by))
    except LotrackError as exc:
        raise click.ClickException(str(exc)) from None
    ctx.call_on_close(ctx.obj.close)


def main() -> None:
    from lotrack.memory import own_process

    own_process()
    try:
        cli.main(prog_name="lotrack")
    except KeyboardInterrupt:
        click.echo("Error: interrupted; nothing was written", err=True)
        sys.exit(130)
