"""The batch-to-batch consistency report: a summary page of every flag with the exposure
of the flagged lots, then one page per numeric attribute with its I-MR control chart
drawn as vector graphics, its statistics and its rule violations; and the same content as
CSV files."""

from __future__ import annotations

import csv
import math
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from reportlab.graphics.shapes import Circle, Drawing, Group, Line, PolyLine, Rect, String
from reportlab.lib import colors
from reportlab.lib.units import mm
from reportlab.platypus import CondPageBreak, Flowable, PageBreak, Paragraph, Spacer

from lotrack.render.files import prepare_output
from lotrack.render.pdf.base import (
    Provenance,
    StoryOnDemand,
    build_pdf,
    data_table,
    para,
    styles,
    table_parts,
    usable_width,
)
from lotrack.render.provenance import StreamedContentHash
from lotrack.services.consistency import ConsistencyRecord

NOT_COMPUTABLE = "n/c"
BLUE = colors.HexColor("#1f4e8c")
RED = colors.HexColor("#b00020")
ORANGE = colors.HexColor("#d9730d")
GREEN = colors.HexColor("#2e7d32")
GREY = colors.HexColor("#8a8a8a")
SHADE = colors.HexColor("#eef3fa")

POINT_COLUMNS = ("attribute", "lot", "manufactured", "status", "value", "value_text", "unit",
                 "moving_range", "in_baseline", "lsl", "usl", "centre", "lcl", "ucl",
                 "oos", "rules", "participants_exposed")
STATISTICS_COLUMNS = ("attribute", "kind", "unit", "n", "mean", "sd", "cv_pct", "min", "max",
                      "lsl", "usl", "cpk", "ppk", "centre", "lcl", "ucl", "mr_bar", "mr_ucl",
                      "baseline_n", "passed", "failed", "pass_rate_pct", "flags", "notes")
FLAG_COLUMNS = ("kind", "attribute", "lot", "manufactured", "lot_status", "rule", "value", "unit",
                "participants_exposed", "doses", "detail")


def fmt(value: object, digits: int = 4) -> str:
    if value is None:
        return NOT_COMPUTABLE
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def _fixed(value: float | None, places: int = 2) -> str:
    return NOT_COMPUTABLE if value is None else f"{value:.{places}f}"


# --- the chart -------------------------------------------------------------------------------


def _nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    span = high - low
    if span <= 0:
        return [low]
    raw = span / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.ceil(low / step) * step
    ticks = []
    tick = first
    while tick <= high + step * 1e-9:
        ticks.append(0.0 if abs(tick) < step * 1e-9 else tick)
        tick += step
    return ticks


class _Panel:
    """One plot area: maps lot index and value to drawing coordinates."""

    def __init__(self, x0: float, y0: float, width: float, height: float, n: int,
                 low: float, high: float) -> None:
        self.x0, self.y0, self.width, self.height = x0, y0, width, height
        self.n, self.low, self.high = n, low, high

    def x(self, index: int) -> float:
        step = self.width / max(self.n, 1)
        return self.x0 + step * (index + 0.5)

    def y(self, value: float) -> float:
        if self.high == self.low:
            return self.y0 + self.height / 2
        return self.y0 + (value - self.low) / (self.high - self.low) * self.height

    def frame(self, group: Group, ticks: list[float]) -> None:
        group.add(Rect(self.x0, self.y0, self.width, self.height, fillColor=None,
                       strokeColor=colors.black, strokeWidth=0.5))
        for tick in ticks:
            if self.low <= tick <= self.high:
                y = self.y(tick)
                group.add(Line(self.x0 - 3, y, self.x0, y, strokeWidth=0.5))
                group.add(String(self.x0 - 5, y - 2.5, f"{tick:.4g}", fontSize=6.5,
                                 textAnchor="end"))

    def hline(self, group: Group, value: float | None, label: str, color: Any,
              dash: list[float] | None = None, width: float = 0.8) -> None:
        if value is None or not (self.low <= value <= self.high):
            return
        y = self.y(value)
        group.add(Line(self.x0, y, self.x0 + self.width, y, strokeColor=color,
                       strokeWidth=width, strokeDashArray=dash))
        group.add(String(self.x0 + self.width + 3, y - 2.5, f"{label} {value:.4g}",
                         fontSize=6.5, fillColor=color))


def _range(values: list[float], lines: list[float | None],
           spec: list[float | None]) -> tuple[float, float, list[str]]:
    """The y range: data and control lines always; a specification limit only when it lies
    near the data (else the data would be squashed flat), and then it is said so."""
    core = [v for v in [*values, *lines] if v is not None]
    low, high = min(core), max(core)
    span = (high - low) or abs(high) or 1.0
    left_out = []
    for limit, name in zip(spec, ("LSL", "USL"), strict=True):
        if limit is None:
            continue
        if low - span <= limit <= high + span:
            low, high = min(low, limit), max(high, limit)
        else:
            left_out.append(f"{name} {limit:g}")
    pad = (high - low) * 0.08 or span * 0.08
    return low - pad, high + pad, left_out


def control_chart(section: dict[str, Any], width: float, height: float = 100 * mm) -> Drawing:
    """The individuals chart over the moving-range chart, lots on a shared axis."""
    points = section["points"]
    limits, spec = section["limits"], section["spec"]
    values = [p["value"] for p in points]
    mrs = [p["moving_range"] for p in points]
    drawing = Drawing(width, height)
    group = Group()
    drawing.add(group)
    # From the bottom: legend, rotated lot numbers, MR panel, gap, I panel, title.
    left, right, legend_band, label_band, gap, title_band = 52, 78, 10, 56, 16, 14
    plotted = height - label_band - gap - title_band
    i_height, mr_height = plotted * 0.66, plotted * 0.34
    plot_width = width - left - right
    i_low, i_high, left_out = _range(values, [limits["ucl"], limits["lcl"], limits["centre"]],
                                     [spec["lsl"], spec["usl"]])
    i_panel = _Panel(left, label_band + mr_height + gap, plot_width, i_height, len(points),
                     i_low, i_high)
    mr_values = [m for m in mrs if m is not None]
    mr_top = max([*mr_values, limits["mr_ucl"] or 0.0, limits["mr_bar"] or 0.0]) or 1.0
    mr_panel = _Panel(left, label_band, plot_width, mr_height, len(points), 0.0, mr_top * 1.1)

    baseline = [i for i, p in enumerate(points) if p["in_baseline"]]
    if baseline:
        step = plot_width / len(points)
        for panel in (i_panel, mr_panel):
            group.add(Rect(panel.x(baseline[0]) - step / 2, panel.y0,
                           step * (baseline[-1] - baseline[0] + 1), panel.height,
                           fillColor=SHADE, strokeColor=None))
    i_panel.frame(group, _nice_ticks(i_low, i_high))
    mr_panel.frame(group, _nice_ticks(0.0, mr_top * 1.1, 3))
    i_panel.hline(group, spec["usl"], "USL", RED, width=1.4)
    i_panel.hline(group, spec["lsl"], "LSL", RED, width=1.4)
    i_panel.hline(group, limits["ucl"], "UCL", ORANGE, dash=[4, 2])
    i_panel.hline(group, limits["lcl"], "LCL", ORANGE, dash=[4, 2])
    i_panel.hline(group, limits["two_sigma_upper"], "+2s", GREY, dash=[1, 2], width=0.5)
    i_panel.hline(group, limits["two_sigma_lower"], "-2s", GREY, dash=[1, 2], width=0.5)
    i_panel.hline(group, limits["centre"], "CL", GREEN)
    mr_panel.hline(group, limits["mr_ucl"], "UCL", ORANGE, dash=[4, 2])
    mr_panel.hline(group, limits["mr_bar"], "MR-bar", GREEN)

    if len(points) > 1:
        group.add(PolyLine([c for i, v in enumerate(values) for c in (i_panel.x(i), i_panel.y(v))],
                           strokeColor=BLUE, strokeWidth=0.7))
        mr_line = [c for i, m in enumerate(mrs) if m is not None
                   for c in (mr_panel.x(i), mr_panel.y(m))]
        if len(mr_line) >= 4:
            group.add(PolyLine(mr_line, strokeColor=BLUE, strokeWidth=0.7))
    for i, point in enumerate(points):
        x, y = i_panel.x(i), i_panel.y(point["value"])
        _marker(group, x, y, point)
        if point["rules"] or point["oos"]:
            tags = (["OOS"] if point["oos"] else []) + [f"R{r}" for r in point["rules"] if r != 5]
            if tags:
                group.add(String(x, y + 6, " ".join(tags), fontSize=6.5, textAnchor="middle",
                                 fillColor=RED if point["oos"] else ORANGE))
        if point["moving_range"] is not None:
            mx, my = mr_panel.x(i), mr_panel.y(point["moving_range"])
            flagged = 5 in point["rules"]
            group.add(Circle(mx, my, 2.6 if flagged else 1.6, fillColor=ORANGE if flagged else BLUE,
                             strokeColor=None))
            if flagged:
                group.add(String(mx, my + 5, "MR", fontSize=6, textAnchor="middle",
                                 fillColor=ORANGE))
        label = point["lot"] + ("" if point["status"] == "released" else f" ({point['status']})")
        tick = Group(String(0, 0, label, fontSize=6.2, textAnchor="end"))
        tick.translate(x + 2, label_band - 5)
        tick.rotate(40)
        group.add(tick)
    group.add(String(left, height - title_band + 4, f"Individuals (I) - {section['label']} "
                     f"[{section['unit']}]", fontSize=8, fontName="Helvetica-Bold"))
    group.add(String(left, mr_panel.y0 + mr_panel.height + 4,
                     "Moving range (MR) of consecutive lots", fontSize=7,
                     fontName="Helvetica-Bold"))
    legend = ("shaded: baseline lots; orange: out of trend (R = rule); red: out of specification; "
              "square: lot never released")
    if left_out:
        legend += f"; outside the plotted range: {', '.join(left_out)}"
    group.add(String(left, legend_band - 8, legend, fontSize=6.5, fillColor=GREY))
    return drawing


class _ChartWhenDrawn(Flowable):
    """An attribute's control chart, made when its page is drawn and let go after: made
    up front, a product's charts of thousands of lots each were held all at once."""

    def __init__(self, section: dict[str, Any], width: float, height: float = 100 * mm) -> None:
        super().__init__()
        self.section, self.width, self.height = section, width, height

    def wrap(self, available_width: float, available_height: float) -> tuple[float, float]:
        return self.width, self.height

    def draw(self) -> None:
        control_chart(self.section, self.width, self.height).drawOn(self.canv, 0, 0)


def _marker(group: Group, x: float, y: float, point: dict[str, Any]) -> None:
    color = RED if point["oos"] else ORANGE if point["rules"] else BLUE
    radius = 3.2 if (point["oos"] or point["rules"]) else 2.2
    if point["released"]:
        group.add(Circle(x, y, radius, fillColor=color, strokeColor=None))
    else:
        # A lot never released (quarantine) or rejected: a hollow square, so it stands out.
        group.add(Rect(x - radius, y - radius, 2 * radius, 2 * radius, fillColor=colors.white,
                       strokeColor=color, strokeWidth=1.2))


# --- the document ----------------------------------------------------------------------------


def as_record(content: ConsistencyRecord | dict[str, Any]) -> ConsistencyRecord:
    """The writers take the record, or the whole content as one dict."""
    return content if isinstance(content, ConsistencyRecord) else ConsistencyRecord.of(content)


def write_consistency_pdf(path: Path, content: ConsistencyRecord | dict[str, Any],
                          provenance: Provenance, site_tz: ZoneInfo,
                          meta: dict[str, Any] | None = None) -> str:
    record = as_record(content)
    head = record.head
    width = usable_width(wide=True)
    product = head["product"]
    since = f", manufactured since {head['since']}" if head["since"] else ""
    # Each attribute's section is unpacked when its page is reached, hashed, drawn and let go.
    digest = StreamedContentHash(head, "numeric")
    return build_pdf(path, "Batch-to-Batch Consistency",
                     f"{product['name']} ({product['code']}) - {len(head['lots'])} lots in "
                     f"manufacture order{since}; control limits from the "
                     f"{head['baseline']['description']}",
                     StoryOnDemand(_sections(record, digest, width)), provenance, digest,
                     site_tz.key, wide=True, meta=meta)


def _sections(record: ConsistencyRecord, digest: StreamedContentHash,
              width: float) -> Iterator[list[Flowable]]:
    """The document a part at a time, each made as the pages reach it (StoryOnDemand)."""
    overview = {**record.head, "numeric": record.numeric_summary}
    yield _summary(overview, width)
    yield from _lots_tables(overview, width)
    for section in record.sections():
        digest.add(section)
        yield from _attribute_parts(section, width)
    if overview["categorical"]:
        story: list[Flowable] = [CondPageBreak(70 * mm), Paragraph(
            "Categorical attributes: pass rate", styles()["Heading2"])]
        cats = overview["categorical"]
        story.append(data_table(
            ["Attribute", "Expected", "Lots tested", "Passed", "Failed", "Not evaluable",
             "Pass rate %", "Failing lots"],
            [[c["label"], c["expected"], c["tested_lots"], c["passed"], c["failed"],
              c["not_evaluable"], _fixed(c["pass_rate_pct"], 1),
              ", ".join(c["failing_lots"]) or "none"] for c in cats],
            widths=[w * width for w in (0.18, 0.22, 0.08, 0.07, 0.07, 0.09, 0.09, 0.20)],
            flagged=[i for i, c in enumerate(cats) if c["failed"]]))
        yield story


def _summary(content: dict[str, Any], width: float) -> list[Flowable]:
    summary = content["summary"]
    flags = content["flags"]
    exposed = summary["exposed_flagged_lots"]
    story: list[Flowable] = [Paragraph("Summary of flags", styles()["Heading2"])]
    verdict = (f"{summary['oos']} out-of-specification and {summary['oot']} out-of-trend "
               f"flag(s)" + (f" and {summary['alert']} alert(s)" if summary.get("alert") else "")
               + f" in {len(summary['flagged_lots'])} lot(s)"
               + (f": {', '.join(summary['flagged_lots'])}." if summary["flagged_lots"] else ".")
               + (f" Flagged lots that reached participants: {', '.join(exposed)}." if exposed
                  else " No flagged lot reached a participant."))
    story += [para(verdict, "Flag" if flags else "Small"), Spacer(1, 2 * mm)]
    for note in content["notes"]:
        story.append(para(f"Note: {note}", "Flag"))
    if flags:
        story.append(data_table(
            ["Type", "Attribute", "Lot", "Manufactured", "Lot status", "Rule", "Value",
             "Participants exposed", "Doses", "Detail"],
            [[f["kind"], f["label"], f["lot"], f["manufactured"], f["lot_status"],
              f["rule"] if f["rule"] in ("spec", "alert") else f"R{f['rule']}",
              f"{f['value']} {f['unit']}",
              f["participants_exposed"], f["doses"], f["detail"]] for f in flags],
            widths=[w * width for w in (0.05, 0.11, 0.08, 0.08, 0.07, 0.04, 0.10, 0.07, 0.05,
                                        0.35)],
            flagged=[i for i, f in enumerate(flags) if f["kind"] == "OOS"]))
    else:
        story.append(para("No flag: every result within specification and no trend rule broken.",
                          "Small"))
    story += [Spacer(1, 3 * mm), para(
        "OOS = out of specification (a limit broken). OOT = out of trend: a rule broken by a "
        "result within its limits. ALERT = within specification, beyond an alert limit "
        "(flagged for QA). Rules: " + "; ".join(
            f"R{k} {v}" for k, v in content["method"]["rules"].items()) + ". Exposure = "
        "distinct participants with a dispensed or administered dose from a vial of the lot.",
        "Small")]
    numeric = content["numeric"]
    if numeric:
        story += [CondPageBreak(40 * mm), Paragraph("Statistics per attribute",
                                                    styles()["Heading3"])]
        story.append(data_table(
            ["Attribute", "Unit", "Lots", "Mean", "SD", "CV %", "Min", "Max", "Specification",
             "Cpk", "Ppk", "CL", "LCL", "UCL", "Flags"],
            [[s["label"], s["unit"], s["statistics"]["n"], fmt(s["statistics"]["mean"]),
              fmt(s["statistics"]["sd"]), _fixed(s["statistics"]["cv_pct"], 1),
              fmt(s["statistics"]["min"]), fmt(s["statistics"]["max"]), s["spec"]["text"],
              _fixed(s["capability"]["cpk"]), _fixed(s["capability"]["ppk"]),
              fmt(s["limits"]["centre"]), fmt(s["limits"]["lcl"]), fmt(s["limits"]["ucl"]),
              _flag_count(flags, s["name"])] for s in numeric],
            widths=[w * width for w in (0.13, 0.07, 0.04, 0.07, 0.07, 0.05, 0.065, 0.065, 0.085,
                                        0.045, 0.045, 0.07, 0.07, 0.07, 0.04)],
            flagged=[i for i, s in enumerate(numeric) if _flag_count(flags, s["name"])]))
        story.append(para(f"{NOT_COMPUTABLE} = not computable (the attribute's page says why). "
                          "Cpk: sigma = MR-bar / 1.128; Ppk: sigma = sample standard deviation; "
                          "both over every lot shown. Control limits from the "
                          f"{content['baseline']['description']}.", "Small"))
    return story


def _lots_tables(content: dict[str, Any], width: float) -> Iterator[list[Flowable]]:
    """The lots and their exposure, a table part at a time (table_parts)."""
    lots = content["lots"]
    flagged_lots = set(content["summary"]["flagged_lots"])
    flags_of = Counter(f["lot"] for f in content["flags"])
    parts = table_parts(
        ["Lot", "Manufactured", "Status", "Released", "In baseline", "Participants exposed",
         "Doses", "Flags"],
        [[lot["lot"], lot["manufactured"], lot["status"], fmt(lot["released"]),
          fmt(lot["in_baseline"]), lot["exposure"]["participants"], lot["exposure"]["doses"],
          flags_of[lot["lot"]]] for lot in lots],
        widths=[w * width for w in (0.14, 0.12, 0.12, 0.1, 0.1, 0.14, 0.1, 0.1)],
        flagged=[i for i, lot in enumerate(lots) if lot["lot"] in flagged_lots], plain=True)
    heading: list[Flowable] = [CondPageBreak(40 * mm),
                               Paragraph("Lots and exposure", styles()["Heading3"])]
    for part in parts:
        yield [*heading, part]
        heading = []


def _flag_count(flags: list[dict[str, Any]], name: str) -> int:
    return sum(f["attribute"] == name for f in flags)


def _attribute_parts(section: dict[str, Any], width: float) -> Iterator[list[Flowable]]:
    """An attribute's pages: heading, chart, statistics and notes, then its tables a part
    at a time (a product's thousands of lots each have a row)."""
    story: list[Flowable] = [PageBreak(), Paragraph(f"{section['label']} ({section['name']})",
                                                    styles()["Heading2"]),
                             para(f"Unit {section['unit']}  |  method {section['method']}  |  "
                                  f"specification {section['spec']['text']}  |  "
                                  f"{section['tested_lots']} lot(s) tested", "Small"),
                             Spacer(1, 2 * mm)]
    if section["computed"]:
        story.append(_ChartWhenDrawn(section, width))
    else:
        story.append(para("No chart: see the notes below.", "Flag"))
    stats, cap, limits = section["statistics"], section["capability"], section["limits"]
    story += [Spacer(1, 2 * mm), data_table(
        ["Lots", "Mean", "SD", "CV %", "Min", "Max", "LSL", "USL", "Cpk", "Ppk", "Baseline lots",
         "CL", "LCL", "UCL", "MR-bar", "MR UCL"],
        [[stats["n"], fmt(stats["mean"]), fmt(stats["sd"]), _fixed(stats["cv_pct"], 1),
          fmt(stats["min"]), fmt(stats["max"]),
          "none" if section["spec"]["lsl"] is None else fmt(section["spec"]["lsl"]),
          "none" if section["spec"]["usl"] is None else fmt(section["spec"]["usl"]),
          _fixed(cap["cpk"]), _fixed(cap["ppk"]), limits["baseline_n"], fmt(limits["centre"]),
          fmt(limits["lcl"]), fmt(limits["ucl"]), fmt(limits["mr_bar"]), fmt(limits["mr_ucl"])]],
        widths=[width / 16] * 16)]
    for note in section["notes"]:
        story.append(para(f"Note: {note}", "Flag"))
    yield story
    if not section["computed"] and section["results"]:
        results = section["results"]
        yield from _spaced(table_parts(
            ["Lot", "Lot status", "Result", "Unit", "Verdict", "In the statistics"],
            [[r["lot"], r["status"], r["value"], r["unit"], r["verdict"].upper(),
              "no (censored)" if r["censored"] else "yes" if r["unit"] == section["unit"]
              else "no"] for r in results],
            widths=[w * width for w in (0.15, 0.15, 0.2, 0.15, 0.15, 0.2)],
            flagged=[i for i, r in enumerate(results) if r["verdict"] != "pass"], plain=True))
    violations = section["violations"]
    if violations:
        yield from _spaced(table_parts(
            ["Rule", "Lot", "Value", "Type", "Participants exposed", "Lots in the pattern",
             "Detail"],
            [[f"R{v['rule']}", v["lot"], fmt(v["value"]), "OOS" if v["oos"] else "OOT",
              v["participants_exposed"], ", ".join(v["lots"]), v["detail"]]
             for v in violations],
            widths=[w * width for w in (0.05, 0.1, 0.08, 0.05, 0.08, 0.34, 0.30)]))
    elif section["computed"]:
        yield [para("No trend rule broken.", "Small")]


def _spaced(parts: Iterator[Flowable]) -> Iterator[list[Flowable]]:
    """Table parts as story sections, a small space before the first."""
    space: list[Flowable] = [Spacer(1, 2 * mm)]
    for part in parts:
        yield [*space, part]
        space = []


# --- CSV -------------------------------------------------------------------------------------


def write_consistency_csv(path: Path, content: ConsistencyRecord | dict[str, Any]) -> list[Path]:
    """Every charted value to `path` (one row per attribute and lot), the statistics to
    <stem>-statistics.csv and the flags to <stem>-flags.csv beside it."""
    prepare_output(path)
    record = as_record(content)
    content = {**record.head, "numeric": record.numeric_summary}
    flags = content["flags"]
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, POINT_COLUMNS)
        writer.writeheader()
        for s in record.sections():
            for p in s["points"]:
                writer.writerow({
                    "attribute": s["name"], "lot": p["lot"], "manufactured": p["manufactured"],
                    "status": p["status"], "value": _num(p["value"]), "value_text": p["value_text"],
                    "unit": p["unit"], "moving_range": _num(p["moving_range"]),
                    "in_baseline": p["in_baseline"], "lsl": _num(s["spec"]["lsl"]),
                    "usl": _num(s["spec"]["usl"]), "centre": _num(s["limits"]["centre"]),
                    "lcl": _num(s["limits"]["lcl"]), "ucl": _num(s["limits"]["ucl"]),
                    "oos": p["oos"], "rules": " ".join(str(r) for r in p["rules"]),
                    "participants_exposed": p["participants_exposed"]})
    stats_path = path.with_name(f"{path.stem}-statistics.csv")
    with stats_path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, STATISTICS_COLUMNS)
        writer.writeheader()
        for s in content["numeric"]:
            st, cap, lim = s["statistics"], s["capability"], s["limits"]
            writer.writerow({
                "attribute": s["name"], "kind": "numeric", "unit": s["unit"], "n": st["n"],
                "mean": _num(st["mean"]), "sd": _num(st["sd"]), "cv_pct": _num(st["cv_pct"]),
                "min": _num(st["min"]), "max": _num(st["max"]), "lsl": _num(s["spec"]["lsl"]),
                "usl": _num(s["spec"]["usl"]), "cpk": _num(cap["cpk"]), "ppk": _num(cap["ppk"]),
                "centre": _num(lim["centre"]), "lcl": _num(lim["lcl"]), "ucl": _num(lim["ucl"]),
                "mr_bar": _num(lim["mr_bar"]), "mr_ucl": _num(lim["mr_ucl"]),
                "baseline_n": lim["baseline_n"], "flags": _flag_count(flags, s["name"]),
                "notes": " | ".join(s["notes"])})
        for c in content["categorical"]:
            writer.writerow({"attribute": c["name"], "kind": "categorical", "unit": "result",
                             "n": c["tested_lots"], "passed": c["passed"], "failed": c["failed"],
                             "pass_rate_pct": _num(c["pass_rate_pct"]),
                             "flags": _flag_count(flags, c["name"]),
                             "notes": " | ".join(c["notes"])})
    flags_path = path.with_name(f"{path.stem}-flags.csv")
    with flags_path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, FLAG_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(flags)
    return [path, stats_path, flags_path]


def _num(value: object) -> object:
    """Full precision in the data files; empty where not computable."""
    return "" if value is None else repr(value) if isinstance(value, float) else value
