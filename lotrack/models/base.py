"""The declarative base shared by every model, and column types used across them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import DateTime, MetaData, TypeDecorator
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase

# Deterministic constraint names, so that migrations (and SQLite batch mode,
# which recreates tables) can refer to every constraint by name.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware timestamp stored in UTC on every backend.

    SQLite has no time zone type: values are normalised to UTC on the way in and
    come back tagged UTC, so naive datetimes never leak into the domain.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime refused: every timestamp must carry a time zone")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    def result_processor(self, dialect: Dialect, coltype: object) -> Callable[[Any], Any]:
        process = super().result_processor(dialect, coltype)
        if dialect.name != "sqlite":
            return process
        parse = datetime.fromisoformat

        def read(value: Any) -> datetime | None:
            # SQLite's text holds UTC without an offset: parsed with the offset appended,
            # it comes out aware in one step, where parsing then replace(tzinfo=...) took
            # seven times as long (a 500-vial lot trace reads hundreds of these).
            if value is None:
                return None
            try:
                return parse(value + "+00:00")
            except (TypeError, ValueError):  # stored some other way: the general path
                return process(value)

        return read


def iso(value: datetime | date | None) -> str | None:
    """ISO 8601 for audit states; datetimes always in UTC, whatever zone they arrived in."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    return value.isoformat()


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


# The demo replays a trial calendar: while it runs, "now" is the simulated date of
# each step, so its records, signatures and audit trail tell one coherent story.
# Nothing outside lotrack.demo sets this.
_simulated_now: ContextVar[datetime | None] = ContextVar("simulated_now", default=None)


def utcnow() -> datetime:
    simulated = _simulated_now.get()
    return simulated if simulated is not None else datetime.now(UTC)


@contextmanager
def simulated_time(at: datetime) -> Iterator[None]:
    token = _simulated_now.set(at.astimezone(UTC))
    try:
        yield
    finally:
        _simulated_now.reset(token)
