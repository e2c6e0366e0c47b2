"""The floor under one `lotrack dispense`: what any Python program on this stack pays.

Starts the interpreter, imports the libraries a dispense needs (SQLAlchemy's ORM,
Pydantic, argon2), connects to the database named by LOTRACK_DB and checks the two
passwords a dispense checks (the dispenser's and the verifier's) against their stored
argon2 hashes, with plain SQL and no lotrack code. Pydantic is loaded as a program using it
loads it, with BaseModel (`import pydantic` alone loads next to nothing; lotrack's protocol
and specification, checked by each dispense, are Pydantic models). bench/run.py times it beside
`lotrack dispense` as a fresh process.
"""

from __future__ import annotations

import os

import sqlalchemy.orm  # noqa: F401
from argon2 import PasswordHasher
from pydantic import BaseModel  # noqa: F401  (see the docstring)
from sqlalchemy import create_engine, text


def main() -> None:
    engine = create_engine(os.environ["LOTRACK_DB"])
    hasher = PasswordHasher()
    with engine.connect() as conn:
        for user, password in ((os.environ["LOTRACK_USER"], os.environ["LOTRACK_PASSWORD"]),
                               ("pharm.b", os.environ["LOTRACK_VERIFIER_PASSWORD"])):
            stored = conn.execute(text("SELECT password_hash FROM users WHERE username = :u"),
                                  {"u": user}).scalar_one()
            hasher.verify(stored, password)


if __name__ == "__main__":
    main()
