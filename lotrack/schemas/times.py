"""Reading dates and times typed by users: ISO 8601, in the site time zone when no offset is given."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

from lotrack.errors import InvalidInput


def parse_date(text: str, what: str = "date") -> date:
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise InvalidInput(f"{what} {text!r} is not a date (use YYYY-MM-DD)") from None


def parse_datetime(text: str, tz: ZoneInfo, what: str = "time") -> datetime:
    """An aware UTC datetime. A time typed without an offset is site time; a time that
    does not exist or is ambiguous at a daylight-saving change is refused, not guessed."""
    raw = text.strip()
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00") if raw.endswith("Z") else raw)
    except ValueError:
        raise InvalidInput(
            f"{what} {text!r} is not a date and time (use YYYY-MM-DDTHH:MM, optionally with an "
            "offset such as +08:00)"
        ) from None
    if value.tzinfo is not None:
        return value.astimezone(UTC)
    return localize(value, tz, what, text)


def localize(value: datetime, tz: ZoneInfo, what: str, text: str) -> datetime:
    first = value.replace(tzinfo=tz, fold=0)
    second = value.replace(tzinfo=tz, fold=1)
    if first.utcoffset() != second.utcoffset():
        # In a gap both folds round-trip to a different wall time; in an overlap both are valid.
        if first.astimezone(UTC).astimezone(tz).replace(tzinfo=None) != value:
            raise InvalidInput(f"{what} {text!r} does not exist in {tz.key} (clocks go forward)")
        raise InvalidInput(f"{what} {text!r} is ambiguous in {tz.key} (clocks go back): "
                           "give the offset, for example +01:00")
    return first.astimezone(UTC)


def end_of_day(day: date, tz: ZoneInfo) -> datetime:
    """23:59:59 local on `day`, in UTC: an expiry date lasts to the end of its day."""
    return datetime.combine(day, time(23, 59, 59), tzinfo=tz).astimezone(UTC)
