"""Batch-to-batch consistency of a product's lots: statistics, process capability, I-MR
control charts with trend rules, and the exposure of flagged lots; and side-by-side lot
comparison.

The statistics are plain functions of lists of numbers (tested by hand on small data
sets); `consistency_report` gathers the numbers from the database and returns the
report as plain data for the renderers (PDF, CSV, JSON, terminal).

Conventions, as in common SPC tools:
- Control limits of the individuals (I) chart come from a baseline of lots: centre
  line = baseline mean, sigma = MR-bar / d2 with d2 = 1.128 (moving range of 2), limits
  centre +/- 3 sigma. The moving-range (MR) chart has centre MR-bar and upper limit
  D4 x MR-bar with D4 = 3.267 (its lower limit is 0).
- Cpk uses the within-lot-to-lot sigma MR-bar / 1.128, Ppk the sample standard deviation,
  both over every lot shown; a one-sided specification gives the one-sided index.
- "Beyond" a limit means strictly beyond: a point exactly on a limit breaks no rule,
  and a point on the centre line is on neither side.
- Censored results ("<0.05") are not measurements: they are left out of the statistics
  and counted, but still judged for out-of-specification.
"""

from __future__ import annotations

import json
import statistics
import zlib
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, Row, func, select
from sqlalchemy.orm import Session, selectinload

from lotrack.errors import InvalidInput, RuleViolation
from lotrack.models import Dose, DoseVial, Lot, QcResult, Signature, Specification, User, Vial
from lotrack.models.base import utcnow
from lotrack.render.provenance import StreamedContentHash
from lotrack.schemas.lots import SpecAttributeIn, SpecFile
from lotrack.services import lots as lot_service
from lotrack.services import qc
from lotrack.services.exposure import EXPOSING_STATUSES
from lotrack.services.lot_views import READERS
from lotrack.services.products import get_product
from lotrack.services.roles import require_role
from lotrack.services.specifications import spec_content

D2 = 1.128  # E[range] / sigma for subgroups of 2 (the moving range of consecutive lots)
D4 = 3.267  # upper limit of the moving-range chart, in units of MR-bar
DEFAULT_BASELINE_LOTS = 8  # first N released lots (a setting: --baseline, env LOTRACK_BASELINE_LOTS)
MIN_BASELINE_LOTS = 2
RELEASE_MEANINGS = ("QA release", "QA release after hold")

RULES = {
    1: "1 point beyond 3 sigma",
    2: "9 points in a row on one side of the centre line",
    3: "6 points in a row steadily increasing or decreasing",
    4: "2 of 3 points beyond 2 sigma on the same side",
    5: "moving range beyond its upper control limit",
}
RULE_RUN = 9
RULE_TREND = 6


# --- statistics on plain numbers ----------------------------------------------------------


def not_computable(reason: str) -> str:
    return f"not computable: {reason}"


def summary_statistics(values: Sequence[float]) -> dict[str, object]:
    """n, mean, sample standard deviation, CV%, min, max; None with a note when undefined."""
    n = len(values)
    out: dict[str, object] = {"n": n, "mean": None, "sd": None, "cv_pct": None,
                              "min": None, "max": None, "notes": []}
    notes: list[str] = out["notes"]  # type: ignore[assignment]
    if n == 0:
        notes.append(not_computable("no numeric result"))
        return out
    out["mean"] = statistics.fmean(values)
    out["min"], out["max"] = min(values), max(values)
    if n < 2:
        notes.append(not_computable("standard deviation and CV need at least 2 lots"))
        return out
    sd = statistics.stdev(values)
    out["sd"] = sd
    if out["mean"] == 0:
        notes.append(not_computable("CV% with a mean of 0"))
    else:
        out["cv_pct"] = 100 * sd / abs(float(out["mean"]))  # type: ignore[arg-type]
    return out


def moving_ranges(values: Sequence[float]) -> list[float]:
    """|x[i] - x[i-1]| for i >= 1: one fewer than the values."""
    return [abs(b - a) for a, b in pairwise(values)]


@dataclass(frozen=True)
class ControlLimits:
    """I-MR limits from a baseline; sigma and the limits are None when not computable."""

    baseline_n: int
    centre: float | None
    mr_bar: float | None
    sigma: float | None
    ucl: float | None
    lcl: float | None
    mr_ucl: float | None
    notes: tuple[str, ...] = ()

    def zone(self, k: float) -> tuple[float, float] | None:
        """(lower, upper) at k sigma from the centre line."""
        if self.centre is None or self.sigma is None:
            return None
        return self.centre - k * self.sigma, self.centre + k * self.sigma

    def as_dict(self) -> dict[str, object]:
        two = self.zone(2)
        return {"baseline_n": self.baseline_n, "centre": self.centre, "mr_bar": self.mr_bar,
                "sigma": self.sigma, "ucl": self.ucl, "lcl": self.lcl,
                "two_sigma_upper": two[1] if two else None,
                "two_sigma_lower": two[0] if two else None,
                "mr_centre": self.mr_bar, "mr_ucl": self.mr_ucl, "mr_lcl": 0.0 if
                self.mr_bar is not None else None, "notes": list(self.notes)}


def imr_limits(baseline: Sequence[float]) -> ControlLimits:
    n = len(baseline)
    if n < MIN_BASELINE_LOTS:
        return ControlLimits(n, None, None, None, None, None, None, (not_computable(
                                 f"control limits need at least {MIN_BASELINE_LOTS} baseline "
                                 f"lots with a result, {n} found"),))
    centre = statistics.fmean(baseline)
    mr_bar = statistics.fmean(moving_ranges(baseline))
    if mr_bar == 0:
        return ControlLimits(n, centre, 0.0, None, None, None, None, (not_computable(
            "the baseline lots do not vary (MR-bar = 0), so sigma and the control limits "
            "are undefined"),))
    sigma = mr_bar / D2
    return ControlLimits(n, centre, mr_bar, sigma, centre + 3 * sigma, centre - 3 * sigma,
                         D4 * mr_bar)


def capability(values: Sequence[float], lsl: float | None,
               usl: float | None) -> dict[str, object]:
    """Cpk (sigma = MR-bar / d2) and Ppk (sigma = sample sd) against the specification."""
    out: dict[str, object] = {"cpk": None, "ppk": None, "sigma_within": None,
                              "sigma_overall": None, "notes": []}
    notes: list[str] = out["notes"]  # type: ignore[assignment]
    if lsl is None and usl is None:
        notes.append(not_computable("the specification has no numeric limit"))
        return out
    if len(values) < 2:
        notes.append(not_computable("capability needs at least 2 lots"))
        return out
    mean = statistics.fmean(values)
    within = statistics.fmean(moving_ranges(values)) / D2
    overall = statistics.stdev(values)
    out["sigma_within"], out["sigma_overall"] = within, overall
    for key, sigma, label in (("cpk", within, "Cpk (MR-bar = 0)"), ("ppk", overall, "Ppk (sd = 0)")):
        if sigma == 0:
            notes.append(not_computable(f"{label}: no variation between lots"))
            continue
        sides = [(usl - mean) / (3 * sigma)] if usl is not None else []
        sides += [(mean - lsl) / (3 * sigma)] if lsl is not None else []
        out[key] = min(sides)
    return out


@dataclass(frozen=True)
class Violation:
    rule: int
    index: int  # the point that completes the pattern (where the rule is detected)
    indices: tuple[int, ...]  # every point of the pattern
    detail: str

    @property
    def description(self) -> str:
        return RULES[self.rule]


def _beyond(value: float, limit: float, side: int, scale: float) -> bool:
    """Strictly beyond `limit` on `side` (+1 above, -1 below); a point equal to the limit
    within rounding (1e-9 of the scale) is on it, not beyond."""
    return side * (value - limit) > 1e-9 * max(abs(limit), scale)


def _side(value: float, centre: float, scale: float) -> int:
    if _beyond(value, centre, 1, scale):
        return 1
    if _beyond(value, centre, -1, scale):
        return -1
    return 0


def trend_violations(values: Sequence[float], centre: float | None,
                     sigma: float | None) -> list[Violation]:
    """Western Electric / Nelson rules 1-4 on individual values, in order of detection.

    1: a point strictly beyond centre +/- 3 sigma;
    2: 9 points in a row strictly on one side of the centre line (flagged at the 9th and
       every further point of the run);
    3: 6 points in a row each strictly above (or below) the one before, i.e. 5 rises
       (flagged at the 6th and every further point of the run);
    4: 2 of 3 consecutive points strictly beyond 2 sigma on the same side (flagged at the
       later of the two).
    Rules 1 and 4 need sigma; without it only rules 2 (needs the centre) and 3 apply.
    """
    found: dict[tuple[int, int], Violation] = {}
    n = len(values)
    scale = abs(sigma) if sigma else max((abs(v) for v in values), default=1.0)

    def add(v: Violation) -> None:
        found.setdefault((v.rule, v.index), v)

    if centre is not None and sigma:
        for i, x in enumerate(values):
            for side, word in ((1, "above"), (-1, "below")):
                if _beyond(x, centre + side * 3 * sigma, side, scale):
                    add(Violation(1, i, (i,), f"{x:.6g} is {word} the "
                                  f"{'upper' if side > 0 else 'lower'} control limit "
                                  f"{centre + side * 3 * sigma:.6g}"))
        for end in range(2, n):
            window = range(end - 2, end + 1)
            for side, word in ((1, "above"), (-1, "below")):
                limit = centre + side * 2 * sigma
                out = [j for j in window if _beyond(values[j], limit, side, scale)]
                if len(out) >= 2:
                    add(Violation(4, out[-1], tuple(out), f"{len(out)} of 3 points {word} "
                                  f"{limit:.6g} (2 sigma)"))
    if centre is not None:
        sides = [_side(x, centre, scale) for x in values]
        for end in range(RULE_RUN - 1, n):
            run = sides[end - RULE_RUN + 1:end + 1]
            if run[0] != 0 and all(s == run[0] for s in run):
                add(Violation(2, end, tuple(range(end - RULE_RUN + 1, end + 1)),
                              f"{RULE_RUN} points in a row {'above' if run[0] > 0 else 'below'} "
                              f"the centre line {centre:.6g}"))
    for end in range(RULE_TREND - 1, n):
        window = values[end - RULE_TREND + 1:end + 1]
        steps = [b - a for a, b in pairwise(window)]
        for sign, word in ((1, "increasing"), (-1, "decreasing")):
            if all(sign * s > 0 for s in steps):
                add(Violation(3, end, tuple(range(end - RULE_TREND + 1, end + 1)),
                              f"{RULE_TREND} points in a row {word}"))
    return sorted(found.values(), key=lambda v: (v.index, v.rule))


def moving_range_violations(values: Sequence[float], mr_ucl: float | None) -> list[Violation]:
    """A moving range strictly above D4 x MR-bar, flagged at the later lot of the pair."""
    if mr_ucl is None:
        return []
    return [Violation(5, i + 1, (i, i + 1), f"moving range {mr:.6g} above {mr_ucl:.6g}")
            for i, mr in enumerate(moving_ranges(values))
            if _beyond(mr, mr_ucl, 1, mr_ucl)]


# --- the report, from the database --------------------------------------------------------


@dataclass
class _LotRow:
    lot: Lot
    status: str
    released: bool
    spec: SpecFile  # the specification the lot was judged by
    manufactured: str  # ISO date, formatted once for every section that shows it
    participants: int = 0
    doses: int = 0
    in_baseline: bool = False

    def as_dict(self) -> dict[str, object]:
        return {"lot": self.lot.lot_number, "manufactured": self.manufactured,
                "status": self.status, "released": self.released,
                "spec_version": self.lot.specification.version, "in_baseline": self.in_baseline,
                "exposure": {"participants": self.participants, "doses": self.doses}}


@dataclass
class _Baseline:
    requested: int | None  # None = all lots
    lot_ids: set[int] = field(default_factory=set)
    description: str = ""
    notes: list[str] = field(default_factory=list)


def parse_baseline(text: str | int | None) -> int | None:
    """--baseline N or 'all' (None); N must allow at least one moving range."""
    if text is None:
        return DEFAULT_BASELINE_LOTS
    if isinstance(text, str) and text.strip().casefold() == "all":
        return None
    try:
        n = int(text)
    except (TypeError, ValueError):
        raise InvalidInput(f"--baseline must be a number of lots or 'all', not {text!r}") from None
    if n < MIN_BASELINE_LOTS:
        raise InvalidInput(f"--baseline must be at least {MIN_BASELINE_LOTS} lots (control "
                           f"limits need a moving range), not {n}")
    return n


@dataclass
class ConsistencyRecord:
    """The report with each numeric section (a result and a chart point per lot) packed
    as compressed JSON once computed: a product's sections whole took about 25 KB a lot.

    `head` is the content without "numeric"; `numeric_summary` each numeric section
    without its points and results (what the summary tables show)."""

    head: dict[str, object]
    numeric_summary: list[dict[str, object]]
    packed: list[bytes]

    @classmethod
    def of(cls, content: dict[str, Any]) -> ConsistencyRecord:
        """The record of content made whole (`consistency_report`)."""
        numeric = content["numeric"]
        return cls({k: v for k, v in content.items() if k != "numeric"},
                   [{k: v for k, v in s.items() if k not in ("points", "results")}
                    for s in numeric], [_pack(s) for s in numeric])

    def sections(self) -> Iterator[dict[str, object]]:
        """Each numeric section whole, unpacked one at a time, in order."""
        for packed in self.packed:
            yield json.loads(zlib.decompress(packed))

    def whole(self) -> dict[str, object]:
        """The content as one dict: what `consistency_report` returns."""
        return self.shape(list(self.sections()))

    def shape(self, numeric: object) -> dict[str, object]:
        """The content's keys in their order, with `numeric` as the numeric sections."""
        content: dict[str, object] = {}
        for key, value in self.head.items():
            content[key] = value
            if key == "lots":
                content["numeric"] = numeric
        return content

    def digest(self) -> str:
        """content_hash(self.whole()), one section at a time."""
        digest = StreamedContentHash(self.head, "numeric")
        for section in self.sections():
            digest.add(section)
        return digest.hexdigest()


def _pack(section: dict[str, object]) -> bytes:
    # In its own key order, so that a section unpacked is the section computed.
    return zlib.compress(json.dumps(section, ensure_ascii=False, default=str).encode())


def consistency_report(session: Session, actor: User, product_code: str, *,
                       attributes: Sequence[str] = (), since: date | None = None,
                       baseline: int | None = DEFAULT_BASELINE_LOTS,
                       baseline_explicit: bool = False,
                       site_tz: ZoneInfo | None = None) -> dict[str, object]:
    """Batch-to-batch consistency of a product's lots, as data (see consistency_record)."""
    return consistency_record(session, actor, product_code, attributes=attributes,
                              since=since, baseline=baseline,
                              baseline_explicit=baseline_explicit, site_tz=site_tz).whole()


def consistency_record(session: Session, actor: User, product_code: str, *,
                       attributes: Sequence[str] = (), since: date | None = None,
                       baseline: int | None = DEFAULT_BASELINE_LOTS,
                       baseline_explicit: bool = False,
                       site_tz: ZoneInfo | None = None) -> ConsistencyRecord:
    """Batch-to-batch consistency of a product's lots.

    `baseline` is the number of first released lots the control limits come from, or
    None for all lots shown. An explicit baseline larger than the released lots is
    refused; the default falls back to every released lot and says so.
    """
    require_role(actor, *READERS, action="reading batch-to-batch consistency")
    tz = site_tz or ZoneInfo("UTC")
    product = get_product(session, product_code)
    shown = [Lot.product_id == product.id]
    if since is not None:
        shown.append(Lot.manufactured_on >= since)
    # selectinload: the specifications (their content a few kilobytes each) and the
    # product come once each, not once with every lot's row.
    stmt = (select(Lot).where(*shown)
            .options(selectinload(Lot.product), selectinload(Lot.specification)))
    lot_list = list(session.execute(stmt.order_by(Lot.manufactured_on, Lot.lot_number,
                                                  Lot.id)).scalars())
    spec = _reference_spec(session, product.id, lot_list)
    lot_specs = _spec_contents(spec, lot_list)
    chosen = _chosen_attributes(lot_specs, attributes)
    rows = _lot_rows(session, lot_list, tz)
    base = _baseline(rows, baseline, baseline_explicit)
    notes: list[str] = []
    if len(rows) < 2:
        notes.append(f"{product.code} has {len(rows)} lot(s)"
                     + (f" manufactured since {since.isoformat()}" if since else "")
                     + ": batch-to-batch statistics need at least 2 lots; nothing below "
                     "could be computed beyond the values themselves")
    notes += base.notes
    numeric: list[dict[str, object]] = []
    packed: list[bytes] = []
    categorical, flags = [], []
    for attr in chosen:
        # One attribute's results at a time: a product's results all at once were most
        # of the report's memory.
        results = _attribute_results(session, shown, attr.name)
        if attr.numeric:
            section = _numeric_section(attr, rows, results, base, lot_specs)
            flags += section.pop("_flags")
            packed.append(_pack(section))
            numeric.append({k: v for k, v in section.items() if k not in ("points", "results")})
        else:
            section = _categorical_section(attr, rows, results)
            categorical.append(section)
            flags += section.pop("_flags")
    by_lot = {r.lot.lot_number: r for r in rows}
    for flag in flags:
        row = by_lot[flag["lot"]]
        flag["lot_status"] = row.status
        flag["participants_exposed"] = row.participants
        flag["doses"] = row.doses
    order = {r.lot.lot_number: i for i, r in enumerate(rows)}
    flags.sort(key=lambda f: (order[f["lot"]], f["kind"], f["attribute"], str(f["rule"])))
    return ConsistencyRecord({
        "document": "batch-to-batch consistency",
        "product": {"code": product.code, "name": product.name, "kind": product.kind},
        "since": since.isoformat() if since else None,
        "specification": {"version": spec.version if spec else None},
        "baseline": {"requested": base.requested if base.requested is not None else "all",
                     "description": base.description,
                     "lots": [r.lot.lot_number for r in rows if r.in_baseline]},
        "method": {"d2": D2, "D4": D4, "sigma": "MR-bar / d2 (baseline lots)",
                   "cpk": "sigma = MR-bar / d2 over every lot shown",
                   "ppk": "sigma = sample standard deviation over every lot shown",
                   "rules": {str(k): v for k, v in RULES.items()},
                   "censored": "results reported as <x or >x are left out of statistics"},
        "lots": [r.as_dict() for r in rows],
        "categorical": categorical,
        "flags": flags,
        "summary": {"lots": len(rows), "oos": sum(f["kind"] == "OOS" for f in flags),
                    "oot": sum(f["kind"] == "OOT" for f in flags),
                    "alert": sum(f["kind"] == "ALERT" for f in flags),
                    "flagged_lots": sorted({f["lot"] for f in flags}, key=order.__getitem__),
                    "exposed_flagged_lots": sorted(
                        {f["lot"] for f in flags if f["participants_exposed"]},
                        key=order.__getitem__)},
        "notes": notes,
    }, numeric, packed)


def _reference_spec(session: Session, product_id: int,
                    lot_list: list[Lot]) -> Specification | None:
    """The active specification, else the newest version any lot was judged by."""
    active = session.execute(select(Specification).where(
        Specification.product_id == product_id, Specification.status == "active")).scalar()
    if active is not None:
        return active
    return max((lot.specification for lot in lot_list), key=lambda s: s.version, default=None)


def _spec_contents(spec: Specification | None, lot_list: list[Lot]) -> list[SpecFile]:
    """The reference specification first, then every other version a lot was judged by."""
    specs: list[SpecFile] = [spec_content(spec)] if spec is not None else []
    seen_versions = {spec.id} if spec is not None else set()
    for lot in lot_list:
        if lot.specification_id not in seen_versions:
            seen_versions.add(lot.specification_id)
            specs.append(spec_content(lot.specification))
    return specs


def _chosen_attributes(specs: list[SpecFile], wanted: Sequence[str]) -> list[SpecAttributeIn]:
    """Attributes of the reference specification, then any only in older versions."""
    ordered: dict[str, SpecAttributeIn] = {}
    for content in specs:
        for attr in content.attributes:
            ordered.setdefault(attr.name, attr)
    if not wanted:
        return list(ordered.values())
    unknown = [w for w in wanted if w not in ordered]
    if unknown:
        known = ", ".join(ordered) or "none (no specification)"
        raise InvalidInput(f"unknown attribute(s) {', '.join(unknown)}; the specification has: "
                           f"{known}")
    return [ordered[w] for w in dict.fromkeys(wanted)]


def _lot_rows(session: Session, lot_list: list[Lot], tz: ZoneInfo) -> list[_LotRow]:
    if not lot_list:
        return []
    keys = {lot.audit_key: lot.id for lot in lot_list}
    released_ids = {keys[e] for (e,) in session.execute(
        select(Signature.entity_id).where(Signature.entity == "lot",
                                          Signature.entity_id.in_(list(keys)),
                                          Signature.meaning.in_(RELEASE_MEANINGS)))}
    exposure = exposure_by_lot(session, [lot.id for lot in lot_list])
    now = utcnow()
    # Parsed once per version, not once per result: a product's thousands of lots were
    # judged by a handful of specification versions.
    specs: dict[int, SpecFile] = {}
    rows = []
    for lot in lot_list:
        participants, doses = exposure.get(lot.id, (0, 0))
        spec = specs.get(lot.specification_id)
        if spec is None:
            spec = specs[lot.specification_id] = spec_content(lot.specification)
        rows.append(_LotRow(lot, lot_service.effective_status(lot, now, tz),
                            lot.id in released_ids, spec, lot.manufactured_on.isoformat(),
                            participants, doses))
    return rows


def exposure_by_lot(session: Session, lot_ids: Sequence[int]) -> dict[int, tuple[int, int]]:
    """lot id -> (distinct participants, doses) with a dispensed or administered dose that
    used a vial of the lot (wasted and returned doses reached no one)."""
    if not lot_ids:
        return {}
    stmt = (select(Vial.lot_id, func.count(func.distinct(Dose.participant_id)),
                   func.count(func.distinct(Dose.id)))
            .join(DoseVial, DoseVial.vial_id == Vial.id).join(Dose, Dose.id == DoseVial.dose_id)
            .where(Vial.lot_id.in_(list(lot_ids)), Dose.status.in_(EXPOSING_STATUSES))
            .group_by(Vial.lot_id))
    return {lot_id: (int(p), int(d)) for lot_id, p, d in session.execute(stmt)}


def _baseline(rows: list[_LotRow], requested: int | None, explicit: bool) -> _Baseline:
    base = _Baseline(requested)
    released = [r for r in rows if r.released]
    if requested is None:
        chosen = rows
        base.description = f"all {len(rows)} lots shown"
    elif requested > len(released):
        if explicit:
            raise InvalidInput(f"--baseline {requested} asks for more lots than the "
                               f"{len(released)} released lot(s) shown; give a smaller number "
                               "or --baseline all")
        if len(released) >= MIN_BASELINE_LOTS:
            chosen = released
            base.description = f"all {len(released)} released lots"
            base.notes.append(f"the default baseline of the first {requested} released lots "
                              f"was not available: only {len(released)} released lot(s); the "
                              "control limits use all of them")
        else:
            chosen = rows
            base.description = f"all {len(rows)} lots shown"
            base.notes.append(f"the default baseline of the first {requested} released lots "
                              f"was not available: only {len(released)} released lot(s); the "
                              f"control limits use all {len(rows)} lot(s) shown")
    else:
        chosen = released[:requested]
        base.description = f"first {requested} released lots"
    for row in chosen:
        row.in_baseline = True
        base.lot_ids.add(row.lot.id)
    return base


# A current result as the report reads it: the columns it shows, not the ORM object (a
# product's tens of thousands of results as objects took most of the report's memory).
Result = Row[tuple[int, str, str, float | None, str, str, str]]


RESULT_COLUMNS = (QcResult.lot_id, QcResult.attribute, QcResult.value_text,
                  QcResult.value_number, QcResult.unit, QcResult.verdict, QcResult.verdict_detail)


def _attribute_results(session: Session, shown: list[ColumnElement[bool]],
                       attribute: str) -> dict[int, Result]:
    """Lot id -> current result for one attribute, for the lots `shown` selects."""
    rows = session.execute(select(*RESULT_COLUMNS).join(Lot, Lot.id == QcResult.lot_id)
                           .where(*shown, QcResult.attribute == attribute,
                                  QcResult.superseded.is_(False)))
    return {r.lot_id: r for r in rows}


def _current_results(session: Session, lot_ids: list[int]) -> dict[tuple[int, str], Result]:
    if not lot_ids:
        return {}
    rows = session.execute(select(*RESULT_COLUMNS).where(QcResult.lot_id.in_(lot_ids),
                                                         QcResult.superseded.is_(False)))
    return {(r.lot_id, r.attribute): r for r in rows}


def is_censored(value_text: str) -> bool:
    return value_text.strip()[:1] in ("<", ">")


def _oos_flag(attr: SpecAttributeIn, row: _LotRow, result: Result) -> dict[str, object]:
    return {"kind": "OOS", "attribute": attr.name, "label": attr.label,
            "lot": row.lot.lot_number, "manufactured": row.manufactured,
            "rule": "spec", "value": result.value_text, "unit": result.unit,
            "detail": f"{result.value_text} {result.unit} outside the specification "
                      f"({result.verdict_detail})"}


def _alert_flag(attr: SpecAttributeIn, row: _LotRow, result: Result) -> dict[str, object] | None:
    """A passing result beyond an alert limit of the specification the lot was judged by."""
    own = row.spec.attribute(attr.name) or attr
    why = qc.alert_of(own, result.value_text, result.verdict)
    if why is None:
        return None
    return {"kind": "ALERT", "attribute": attr.name, "label": attr.label,
            "lot": row.lot.lot_number, "manufactured": row.manufactured,
            "rule": "alert", "value": result.value_text, "unit": result.unit,
            "detail": f"within specification but flagged for QA: {why}"}


def _numeric_section(attr: SpecAttributeIn, rows: list[_LotRow],
                     results: dict[int, Result], base: _Baseline,
                     spec_contents: list[SpecFile]) -> dict[str, object]:
    notes: list[str] = []
    flags: list[dict[str, object]] = []
    tested = [(row, results[row.lot.id]) for row in rows if row.lot.id in results]
    for row, result in tested:
        if result.verdict == "fail":
            flags.append(_oos_flag(attr, row, result))
        alert = _alert_flag(attr, row, result)
        if alert:
            flags.append(alert)
    units = Counter(r.unit for _, r in tested)
    usable = [(row, r) for row, r in tested
              if r.value_number is not None and not is_censored(r.value_text)]
    censored = [row.lot.lot_number for row, r in tested
                if r.value_number is not None and is_censored(r.value_text)]
    limit_versions = {(a.min, a.max) for a in (
        content.attribute(attr.name) for content in spec_contents) if a}
    if len(limit_versions) > 1:
        notes.append("lots were judged against specification versions with different limits; "
                     f"capability uses the current limits {qc.limit_text(attr)}")
    section: dict[str, object] = {
        "name": attr.name, "label": attr.label, "unit": attr.unit, "method": attr.method,
        "spec": {"lsl": attr.min, "usl": attr.max, "text": qc.limit_text(attr)},
        "tested_lots": len(tested), "censored_lots": censored,
        "results": [{"lot": row.lot.lot_number, "status": row.status, "value": r.value_text,
                     "unit": r.unit, "verdict": r.verdict, "censored": is_censored(r.value_text)}
                    for row, r in tested],
        "statistics": summary_statistics([]), "capability": capability([], None, None),
        "limits": imr_limits([]).as_dict(), "points": [], "violations": [], "notes": notes,
        "computed": False,
    }
    if censored:
        notes.append(f"{len(censored)} censored result(s) left out of the statistics "
                     f"({', '.join(censored)})")
    if len(units) > 1:
        mix = ", ".join(f"{u} ({n} lot(s))" for u, n in sorted(units.items()))
        notes.append(not_computable(f"results in mixed units: {mix}; no statistics, chart or "
                                    "trend rules; out-of-specification results are still listed"))
        section["points"] = [_point(row, r, None, False) for row, r in usable]
        section["_flags"] = flags
        section["unit"] = "mixed"
        return section
    if not usable:
        notes.append(not_computable("no numeric result" + (" (every result is censored)"
                                                           if censored else "")))
        section["_flags"] = flags
        return section
    if units and attr.unit not in units:
        section["unit"] = next(iter(units))
    values = [float(r.value_number) for _, r in usable]  # type: ignore[arg-type]
    stats = summary_statistics(values)
    limits = imr_limits([v for (row, _), v in zip(usable, values, strict=True)
                         if row.lot.id in base.lot_ids])
    cap = capability(values, attr.min, attr.max)
    if len(values) < 2:
        notes.append(not_computable(f"only {len(values)} lot with a numeric result; standard "
                                    "deviation, capability, control limits and trend rules "
                                    "need at least 2"))
    violations = trend_violations(values, limits.centre, limits.sigma) if len(values) >= 2 else []
    violations += moving_range_violations(values, limits.mr_ucl)
    mrs = moving_ranges(values)
    rules_at: dict[int, list[int]] = {}
    for v in violations:
        rules_at.setdefault(v.index, []).append(v.rule)
    points = []
    for i, (row, result) in enumerate(usable):
        point = _point(row, result, mrs[i - 1] if i else None, row.lot.id in base.lot_ids)
        point["rules"] = sorted(set(rules_at.get(i, [])))
        points.append(point)
    listed = []
    for v in violations:
        row, result = usable[v.index]
        listed.append({"rule": v.rule, "description": v.description,
                       "lot": row.lot.lot_number,
                       "lots": [usable[j][0].lot.lot_number for j in v.indices],
                       "value": values[v.index], "detail": v.detail,
                       "oos": result.verdict == "fail", "participants_exposed": row.participants})
        if result.verdict != "fail":
            flags.append({"kind": "OOT", "attribute": attr.name, "label": attr.label,
                          "lot": row.lot.lot_number,
                          "manufactured": row.manufactured,
                          "rule": v.rule, "value": result.value_text, "unit": result.unit,
                          "detail": f"rule {v.rule} ({v.description}): {v.detail}; lots "
                                    f"{', '.join(usable[j][0].lot.lot_number for j in v.indices)}"})
    if len(values) >= 2:
        notes += list(limits.notes) + list(cap["notes"]) + list(stats["notes"])  # type: ignore[arg-type]
    section.update(statistics=stats, capability=cap, limits=limits.as_dict(), points=points,
                   violations=listed, computed=len(values) >= 2)
    section["_flags"] = flags
    return section


def _point(row: _LotRow, result: Result, mr: float | None, in_baseline: bool) -> dict[str, object]:
    return {"lot": row.lot.lot_number, "manufactured": row.manufactured,
            "status": row.status, "released": row.released,
            "value": result.value_number, "value_text": result.value_text,
            "unit": result.unit, "moving_range": mr, "in_baseline": in_baseline,
            "verdict": result.verdict, "oos": result.verdict == "fail", "rules": [],
            "participants_exposed": row.participants}


def _categorical_section(attr: SpecAttributeIn, rows: list[_LotRow],
                         results: dict[int, Result]) -> dict[str, object]:
    tested = [(row, results[row.lot.id]) for row in rows if row.lot.id in results]
    verdicts = Counter(r.verdict for _, r in tested)
    judged = verdicts["pass"] + verdicts["fail"]
    notes = [] if judged else [not_computable("no lot has a judged result")]
    return {
        "name": attr.name, "label": attr.label, "expected": attr.expected,
        "tested_lots": len(tested), "passed": verdicts["pass"], "failed": verdicts["fail"],
        "not_evaluable": verdicts["not_evaluable"],
        "pass_rate_pct": 100 * verdicts["pass"] / judged if judged else None,
        "failing_lots": [row.lot.lot_number for row, r in tested if r.verdict == "fail"],
        "notes": notes,
        "_flags": [_oos_flag(attr, row, r) for row, r in tested if r.verdict == "fail"],
    }


# --- lot comparison ------------------------------------------------------------------------


def compare_lots(session: Session, actor: User, lot_numbers: Sequence[str],
                 product_code: str | None = None) -> dict[str, object]:
    """Current QC results of several lots side by side, with their differences measured
    against the width of the specification range."""
    require_role(actor, *READERS, action="comparing lots")
    numbers = [n.strip() for n in lot_numbers]
    repeated = sorted({n for n in numbers if numbers.count(n) > 1})
    if repeated:
        raise InvalidInput(f"lot(s) given twice: {', '.join(repeated)}")
    if len(numbers) < 2:
        raise InvalidInput("give at least 2 lots to compare")
    lot_list = [lot_service.get_lot(session, n, product_code) for n in numbers]
    products = {lot.product.code for lot in lot_list}
    if len(products) > 1:
        raise RuleViolation("lots of different products cannot be compared: "
                            + ", ".join(f"{lot.lot_number} ({lot.product.code})" for lot in lot_list))
    results = _current_results(session, [lot.id for lot in lot_list])
    specs = {lot.id: spec_content(lot.specification) for lot in lot_list}
    attributes: dict[str, SpecAttributeIn] = {}
    for lot in lot_list:
        for attr in specs[lot.id].attributes:
            attributes.setdefault(attr.name, attr)
    rows = []
    for name, attr in attributes.items():
        per_lot = [results.get((lot.id, name)) for lot in lot_list]
        limit_texts = list(dict.fromkeys(
            qc.limit_text(a) for a in (specs[lot.id].attribute(name) for lot in lot_list) if a))
        row: dict[str, object] = {
            "attribute": name, "label": attr.label, "unit": attr.unit,
            "kind": "numeric" if attr.numeric else "categorical",
            "limit": limit_texts[0] if len(limit_texts) == 1 else " | ".join(limit_texts),
            "values": {lot.lot_number: (r.value_text if r else None)
                       for lot, r in zip(lot_list, per_lot, strict=True)},
            "verdicts": {lot.lot_number: (r.verdict if r else "missing")
                         for lot, r in zip(lot_list, per_lot, strict=True)},
        }
        row.update(_difference(attr, per_lot, len(limit_texts) > 1))
        rows.append(row)
    return {"product": lot_list[0].product.code,
            "lots": [{"lot": lot.lot_number, "manufactured": lot.manufactured_on.isoformat(),
                      "status": lot.status, "spec_version": lot.specification.version}
                     for lot in lot_list],
            "attributes": rows}


def _difference(attr: SpecAttributeIn, per_lot: list[Result | None],
                limits_differ: bool) -> dict[str, object]:
    if not attr.numeric:
        texts = {r.value_text.strip().casefold() for r in per_lot if r is not None}
        if any(r is None for r in per_lot):
            return {"difference": None, "pct_of_spec_range": None, "note": "missing result"}
        return {"difference": "same" if len(texts) == 1 else "differs",
                "pct_of_spec_range": None, "note": ""}
    if any(r is None for r in per_lot):
        return {"difference": None, "pct_of_spec_range": None, "note": "missing result"}
    if any(r.value_number is None or is_censored(r.value_text) for r in per_lot):  # type: ignore[union-attr]
        return {"difference": None, "pct_of_spec_range": None,
                "note": "censored result: no difference computed"}
    if len({r.unit for r in per_lot}) > 1:  # type: ignore[union-attr]
        return {"difference": None, "pct_of_spec_range": None, "note": "mixed units"}
    values = [float(r.value_number) for r in per_lot]  # type: ignore[union-attr,arg-type]
    # Two lots: B - A (signed); more: the spread, max - min.
    diff = values[1] - values[0] if len(values) == 2 else max(values) - min(values)
    out: dict[str, object] = {"difference": diff, "pct_of_spec_range": None, "note": ""}
    if attr.min is not None and attr.max is not None and attr.max > attr.min:
        out["pct_of_spec_range"] = 100 * diff / (attr.max - attr.min)
    else:
        out["note"] = "one-sided specification: no range to compare with"
    if limits_differ:
        out["note"] = (str(out["note"]) + "; " if out["note"] else "") + \
            "limits differ between the lots' specification versions"
    if len(values) > 2:
        out["note"] = (str(out["note"]) + "; " if out["note"] else "") + "spread (max - min)"
    return out

