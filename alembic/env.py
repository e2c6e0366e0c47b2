"""Alembic environment: the same migrations for SQLite and PostgreSQL."""

from __future__ import annotations

import logging.config
import os
from typing import Any, Literal

from alembic import context

from lotrack.db import make_engine
from lotrack.models import Base
from lotrack.models.base import UTCDateTime

config = context.config
if config.config_file_name is not None:
    logging.config.fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = Base.metadata


def render_item(type_: str, obj: Any, autogen_context: Any) -> str | Literal[False]:
    # Migrations must not import model code: they outlive it.
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def run_migrations() -> None:
    engine = config.attributes.get("engine")
    if engine is None:
        engine = make_engine(os.environ.get("LOTRACK_DB", "sqlite:///lotrack.db"))
    # The lotrack engine begins SQLite transactions itself; Alembic's own
    # transaction per migration is what we want on both backends.
    with engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            # A batch migration rebuilds a table (copy, drop, rename) that other tables
            # reference; with foreign keys on, SQLite refuses the drop on a populated
            # database. They are switched off around the migrations (only possible
            # outside a transaction) and every reference is checked before the commit.
            connection.connection.driver_connection.execute("PRAGMA foreign_keys = OFF")
        try:
            context.configure(
                connection=connection,
                target_metadata=target_metadata,
                render_as_batch=True,  # SQLite cannot ALTER most things in place
                compare_type=True,
                render_item=render_item,
            )
            with context.begin_transaction():
                before = config.attributes.get("before_migrations")
                if before is not None:
                    before(connection)
                context.run_migrations()
                after = config.attributes.get("after_migrations")
                if after is not None:
                    after(connection)
                if sqlite:
                    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                    if broken:
                        raise RuntimeError(f"the migration left {len(broken)} broken "
                                           f"reference(s), first: {tuple(broken[0])}")
            connection.commit()
        finally:
            if sqlite:
                connection.connection.driver_connection.execute("PRAGMA foreign_keys = ON")


run_migrations()
