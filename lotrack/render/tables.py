"""Terminal tables and JSON: the one renderer every read command hands its rows to."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo


def _json_default(value: object) -> object:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return str(value)


def to_json(data: object) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False, default=_json_default)


def json_array(items: Iterable[object]) -> Iterator[str]:
    """The text of to_json(list(items)), item by item: a list too long to hold in memory
    (a whole audit trail) is written as it is read."""
    first = True
    for item in items:
        text = to_json(item).replace("\n", "\n  ")
        yield ("[\n  " if first else ",\n  ") + text
        first = False
    yield "[]" if first else "\n]"


def json_with_list(content: dict[str, object], key: str, items: Iterable[object]) -> Iterator[str]:
    """The text of to_json(content) where content[key] is the list of `items`, written item
    by item (a product's consistency sections unpacked one at a time). `content` holds a
    placeholder at `key`, so the key keeps its place."""
    marker = "\x00items\x00"
    before, after = to_json({k: (marker if k == key else v) for k, v in content.items()}).split(
        to_json(marker))
    yield before
    for chunk in json_array(items):
        yield chunk.replace("\n", "\n  ")  # one level deeper than a list of its own
    yield after


def site_time(value: datetime | None, tz: ZoneInfo) -> str:
    """A UTC timestamp shown in the site's time zone, with the zone so it is unambiguous."""
    if value is None:
        return ""
    # Same text as strftime("%Y-%m-%d %H:%M %Z") in half its time: a lot trace formats
    # hundreds. Printf-style, as it costs a quarter less than isoformat (which also
    # formats the offset, only for it to be cut off) or an f-string with a spec per field.
    local = value.astimezone(tz)
    return "%04d-%02d-%02d %02d:%02d %s" % (  # noqa: UP031
        local.year, local.month, local.day, local.hour, local.minute, local.tzname() or "")


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ", ".join(_cell(v) for v in value)
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def table(rows: Sequence[Mapping[str, object]], columns: Sequence[str] | None = None,
          empty: str = "(none)") -> str:
    if not rows:
        return empty
    cols = list(columns or rows[0].keys())
    cells = [[_cell(row.get(c)) for c in cols] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(cols)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)).rstrip(),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join(lines)


def aligned_lines(rows: Iterable[Mapping[str, object]], widths: Mapping[str, int]
                  ) -> Iterator[str]:
    """The lines of table(rows), the widest value of each column known beforehand
    (`widths`, by column, in the columns' order): a table of any length, aligned as one,
    in the memory of one row. The caller gives `table`'s `empty` text when there are no rows."""
    cols = list(widths)
    full = [max(len(c), widths[c]) for c in cols]
    yield "  ".join(c.ljust(w) for c, w in zip(cols, full, strict=True)).rstrip()
    yield "  ".join("-" * w for w in full)
    for row in rows:
        yield "  ".join(_cell(row.get(c)).ljust(w) for c, w in zip(cols, full, strict=True)).rstrip()


def table_pages(pages: Iterable[Sequence[Mapping[str, object]]], columns: Sequence[str],
                empty: str = "(none)") -> Iterator[str]:
    """Rows arriving in pages, each page aligned on its own with its header, pages
    separated by a blank line: a table of any length in the memory of one page."""
    shown = False
    for page in pages:
        if page:
            yield ("\n\n" if shown else "") + table(page, columns)
            shown = True
    if not shown:
        yield empty


def record(fields: Mapping[str, object]) -> str:
    """One record as aligned `name: value` lines."""
    width = max((len(k) for k in fields), default=0)
    return "\n".join(f"{k.ljust(width)} : {_cell(v)}" for k, v in fields.items())
