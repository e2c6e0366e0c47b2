"""Labels the demo prints as its staff would: vial labels when a lot is filled, box labels
at receipt, a dose label with every dispensed perfusion. Each print is audited."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from sqlalchemy.orm import Session

from lotrack.demo.core import SITE_TZ, Demo
from lotrack.render.labels.layout import LabelData, layout
from lotrack.render.labels.output import stage_labels
from lotrack.services import labels

# Demo labels must never pass for real ones.
WATERMARK = "DEMO - NOT FOR USE"


def print_labels(demo: Demo, username: str, at: datetime, kind: str,
                 gather: Callable[[Session], list[LabelData]], out: Path,
                 sheet: str | None = None) -> None:
    template = labels.load_template(None, kind)
    sheet_spec = template.sheet_named(sheet)

    def action(session, actor):
        printed = labels.record_prints(session, actor, kind, gather(session), template, "pdf", 1,
                                       None)
        return stage_labels(out, "pdf", [layout(template, p) for p in printed], 1, template,
                            sheet_spec, f"Demo {kind} labels", WATERMARK)

    demo.act(username, at, action).commit()


def vial_labels(demo: Demo, lot_number: str, at: datetime) -> None:
    print_labels(demo, "qa.lee", at, "vial",
                 lambda s: labels.vial_labels(s, lot_number, None, ()),
                 demo.out / "labels" / f"vials-{lot_number}.pdf", sheet="a4")


def box_label(demo: Demo, box_path: str, at: datetime) -> None:
    name = box_path.rsplit("/", 1)[-1]
    print_labels(demo, "pharm.chen", at, "box", lambda s: labels.box_labels(s, [box_path]),
                 demo.out / "labels" / f"box-{name}.pdf")


def dose_label_action(demo: Demo, dose_code: str):
    """The dose label, printed in the dispensing transaction: returns the staged file."""
    template = labels.load_template(None, "dose")

    def stage(session, actor):
        data = labels.dose_labels(session, [dose_code], SITE_TZ)
        printed = labels.record_prints(session, actor, "dose", data, template, "pdf", 1, None)
        return stage_labels(demo.out / "labels" / "doses" / f"{dose_code}.pdf", "pdf",
                            [layout(template, printed[0])], 1, template, None,
                            f"Dose label {dose_code}", WATERMARK)

    return stage
