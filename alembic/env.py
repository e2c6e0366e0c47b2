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
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=True,  # SQLite cannot ALTER most things in place
            compare_type=True,
            render_item=render_item,
        )
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()


run_migrations()
