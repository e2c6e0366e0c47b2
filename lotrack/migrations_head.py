"""The migration revision this code expects; a test keeps it equal to Alembic's head."""

HEAD = "0007"
