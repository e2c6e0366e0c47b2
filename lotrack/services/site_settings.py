"""The site time zone, recorded in the database and authoritative for every workstation.

It decides how a time typed without an offset is read, when a lot's expiry day ends and
which post-operative day a dose falls on; a workstation's own LOTRACK_TZ (or --tz) counts
only for a database that has none recorded, and must agree with it otherwise, or two
workstations on one database would record different days for the same instant.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from lotrack import audit
from lotrack.config import parse_timezone, same_zone
from lotrack.errors import InvalidInput, RuleViolation
from lotrack.models import Setting, User
from lotrack.models.base import utcnow
from lotrack.models.settings import SITE_TIME_ZONE
from lotrack.services.roles import require_role


@dataclass(frozen=True)
class RecordedZone:
    """The site time zone as recorded: its value, when and by whom it was last set."""

    zone: ZoneInfo
    changed_at: datetime
    changed_by: str


def recorded_zone_name(connection: Connection) -> str | None:
    """The zone recorded in the database, or None (a database from before revision 0007
    that no administrator has given one yet). One small query, for the schema check; on
    the table, not the mapped class, which would configure every mapper this early."""
    settings = Setting.__table__.c
    return connection.execute(
        select(settings.value).where(settings.key == SITE_TIME_ZONE)).scalar_one_or_none()


def recorded_zone(session: Session) -> RecordedZone | None:
    row = session.execute(
        select(Setting, User.username).join(User, User.id == Setting.changed_by_id)
        .where(Setting.key == SITE_TIME_ZONE)).one_or_none()
    if row is None:
        return None
    setting, username = row
    return RecordedZone(parse_timezone(setting.value), setting.changed_at, username)


def set_site_time_zone(session: Session, actor: User, zone_name: str,
                       reason: str | None) -> Setting:
    """Record the site time zone (administrators). Changing a recorded one needs a reason:
    every later reading of typed times, expiry days and post-operative days follows it."""
    require_role(actor, "admin", action="setting the site time zone")
    zone = parse_timezone(zone_name.strip())
    setting = session.get(Setting, SITE_TIME_ZONE)
    if setting is not None and same_zone(zone, parse_timezone(setting.value)):
        also = "" if setting.value == zone.key else f" ({zone.key} is another name for it)"
        raise RuleViolation(f"the site time zone is already {setting.value}{also}")
    if setting is not None and not (reason and reason.strip()):
        raise InvalidInput(f"changing the site time zone from {setting.value} to {zone.key} "
                           "needs a reason")
    clean_reason = reason.strip() if reason and reason.strip() else None
    if setting is None:
        setting = Setting(key=SITE_TIME_ZONE, value=zone.key, changed_at=utcnow(),
                          changed_by_id=actor.id)
        session.add(setting)
        audit.record_row(session, actor, setting, "create", None, clean_reason)
        return setting
    before = setting.audit_state()
    setting.value, setting.changed_at, setting.changed_by_id = zone.key, utcnow(), actor.id
    audit.record_row(session, actor, setting, "change", before, clean_reason)
    return setting
