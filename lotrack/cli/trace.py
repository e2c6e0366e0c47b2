"""`lotrack trace lot|vial|participant|ae`: who received what, and what followed."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import click

from lotrack.cli.context import App, emit, output_options, pass_app

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from lotrack.models import User


@click.group()
def trace() -> None:
    """Forward traces (lot, vial) and backward traces (participant, adverse event)."""


def _pairs(counts: dict[str, int], skip_zero: bool = False) -> str:
    """"holds 1, recalls 0": a lot's history flags or a count per status, in one line."""
    return ", ".join(f"{k} {v}" for k, v in counts.items() if v or not skip_zero)


def _joined(dose: dict) -> dict:
    """A dose row for a table: its vials and lots as one cell each."""
    return {**dose, "vials": ", ".join(dose["vials"]), "lots": ", ".join(dose["lots"])}


def _ae_lines(aes: list[dict]) -> list[str]:
    return [f"    {a['ae']} {a['term']} grade {a['grade']}{' SERIOUS' if a['serious'] else ''}, "
            f"{a['relatedness']}, onset {a['onset']}"
            + (f" (day {a['days_after_first_exposure']} after first exposure)"
               if a.get("days_after_first_exposure") is not None else "") for a in aes]


def _recipient_lines(participants: list[dict]) -> list[str]:
    lines = []
    for p in participants:
        doses = ", ".join(f"{d['dose']} (C{d['cycle']}P{d['perfusion']} {d['status']})"
                          for d in p["doses"])
        lines.append(f"  {p['subject']} ({p['group']}, {p['status']}): first exposure "
                     f"{p['first_exposure']}; doses {doses}")
        lines += _ae_lines(p["adverse_events_after_exposure"]) or ["    no adverse event after exposure"]
    return lines


def _show(app: App, as_json: bool, trace: Callable[[Session, User], dict],
          lines: Callable[[dict], list[str]]) -> None:
    """Run one trace in a read transaction, then print it as JSON or as text lines."""
    data = app.read(trace)
    emit(data, as_json, lambda: "\n".join(lines(data)))


@trace.command("lot")
@click.argument("lot_number", metavar="LOT")
@click.option("--product", "product_code", help="When two products share a lot number.")
@output_options
@pass_app
def trace_lot(app: App, lot_number: str, product_code: str | None, as_json: bool) -> None:
    """Every vial of LOT and where it is, every participant who received it and their
    adverse events after exposure, and the unused vials still at site.

    Example: lotrack trace lot EXO-2601 --json
    """
    from lotrack.render.tables import table
    from lotrack.services import traces

    def lines(data: dict) -> list[str]:
        unused = data["unused_at_site"]
        return [f"Lot {data['lot']} ({data['product']}), {data['status']}, expiry {data['expiry']}",
                f"Vials: {_pairs(data['counts'])}. History: {_pairs(data['flags'])}.", "",
                table(data["vials"], ["serial", "status", "where", "dose", "participant"]), "",
                f"Participants who received it: {len(data['participants'])}",
                *_recipient_lines(data["participants"]), "",
                f"Unused at site: {len(unused)}" + (f" ({', '.join(unused)})" if unused else "")]

    _show(app, as_json, lambda s, actor: traces.trace_lot(s, actor, lot_number, product_code,
                                                          app.site_tz), lines)


@trace.command("vial")
@click.argument("serial")
@output_options
@pass_app
def trace_vial(app: App, serial: str, as_json: bool) -> None:
    """Where a vial is, who received it, and their adverse events after exposure.

    Example: lotrack trace vial V00000013
    """
    from lotrack.services import traces

    def lines(data: dict) -> list[str]:
        return [f"Vial {data['serial']} of lot {data['lot']} ({data['product']}): {data['status']}"
                + (f" at {data['where']}" if data["where"] else "")
                + (" ON HOLD" if data["on_hold"] else ""),
                *(_recipient_lines(data["participants"]) or ["  not dispensed to anyone"])]

    _show(app, as_json, lambda s, actor: traces.trace_vial(s, actor, serial, app.site_tz),
          lines)


@trace.command("participant")
@click.argument("subject")
@output_options
@pass_app
def trace_participant(app: App, subject: str, as_json: bool) -> None:
    """Every dose a participant received, with vials and lots, each lot's holds,
    excursions and deviations, and the participant's adverse events.

    Example: lotrack trace participant IUA-003
    """
    from lotrack.render.tables import table
    from lotrack.services import traces

    def lines(data: dict) -> list[str]:
        return [f"Participant {data['subject']} ({data['group']}, {data['status']})", "",
                table([_joined(d) for d in data["doses"]],
                      ["dose", "cycle", "perfusion", "status", "dispensed_at", "vials", "lots"]),
                "", table(data["lots"]) if data["lots"] else "No lot received.", "",
                "Adverse events:", *(_ae_lines(data["adverse_events"]) or ["    none recorded"])]

    _show(app, as_json, lambda s, actor: traces.trace_participant(s, actor, subject,
                                                                  app.site_tz), lines)


@trace.command("ae")
@click.argument("ae_code", metavar="AE")
@output_options
@pass_app
def trace_ae(app: App, ae_code: str, as_json: bool) -> None:
    """Backward trace of an adverse event: every dose received before onset, with lot,
    vial, product, days from dose to onset, and whether the lot had a hold, an excursion
    or a deviation.

    Example: lotrack trace ae AE00001
    """
    from lotrack.render.tables import table
    from lotrack.services import traces

    def lines(data: dict) -> list[str]:
        rows = [{"dose": d["dose"], "cycle": d["cycle"], "perfusion": d["perfusion"],
                 "given": d["administered_at"] or d["dispensed_at"],
                 "days_to_onset": d["days_to_onset"], "vials": d["vials"], "lots": d["lots"],
                 "lot_history": "; ".join(f"{lot}: " + (_pairs(f, skip_zero=True) or "clean")
                                          for lot, f in d["lot_flags"].items())}
                for d in data["doses_before_onset"]]
        return [f"Adverse event of {data['subject']} ({data['group']}):", *_ae_lines([data["ae"]]),
                "", table([_joined(r) for r in rows]) if rows else "No dose before onset."]

    _show(app, as_json, lambda s, actor: traces.trace_ae(s, actor, ae_code, app.site_tz),
          lines)
