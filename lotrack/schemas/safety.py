"""Adverse events as typed by investigators, and the shipped CTCAE v5.0 term file."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from lotrack.schemas import load_toml

# The values the adverse_events table accepts (its check constraints say the same).
RELATEDNESS = ("unrelated", "unlikely", "possible", "probable", "definite")
OUTCOMES = ("recovered", "recovering", "not_recovered", "recovered_with_sequelae", "fatal",
            "unknown")


class _Strict(BaseModel):
    # defer_build: a model is built on first use, so a command pays only for what it validates.
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True,
                              defer_build=True)


def normalise_term(text: str) -> str:
    """A term as stored: inner runs of spaces collapsed (the case is kept as typed)."""
    return re.sub(r"\s+", " ", text).strip()


# --- the CTCAE term file ----------------------------------------------------------

class CtcaeTerm(_Strict):
    term: str = Field(min_length=1, max_length=200)
    soc: str = Field(min_length=1, max_length=200)
    grades: tuple[int, ...] = Field(min_length=1)
    aliases: tuple[str, ...] = ()

    @field_validator("grades")
    @classmethod
    def _grades(cls, grades: tuple[int, ...]) -> tuple[int, ...]:
        if any(g not in range(1, 6) for g in grades):
            raise ValueError("CTCAE grades are 1 to 5")
        if len(set(grades)) != len(grades):
            raise ValueError("a grade is listed twice")
        return tuple(sorted(grades))


class CtcaeFile(_Strict):
    terms: tuple[CtcaeTerm, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> CtcaeFile:
        seen: set[str] = set()
        for entry in self.terms:
            for name in (entry.term, *entry.aliases):
                key = normalise_term(name).casefold()
                if key in seen:
                    raise ValueError(f"{name!r} names two terms")
                seen.add(key)
        return self


def shipped_ctcae_path() -> Path:
    return Path(__file__).resolve().parent.parent / "data" / "ctcae-terms.toml"


def load_ctcae_file(path: Path) -> CtcaeFile:
    return load_toml(CtcaeFile, path, "CTCAE term file")


# --- adverse events typed by an investigator ----------------------------------------

def _choice(value: str | None, allowed: tuple[str, ...]) -> str | None:
    if value is None:
        return None
    word = value.strip().lower().replace("-", "_").replace(" ", "_")
    if word not in allowed:
        raise ValueError(f"must be one of {', '.join(allowed)}")
    return word


class AdverseEventIn(_Strict):
    """A new adverse event. Relatedness not yet assessed is recorded as `possible`: an event
    counts as related until the investigator says otherwise (the conservative choice for
    expedited reporting)."""

    term: str = Field(min_length=1, max_length=200)
    grade: int = Field(ge=1, le=5)
    onset: date
    serious: bool = False
    relatedness: str = "possible"
    outcome: str | None = None
    resolved: date | None = None
    action: str | None = Field(default=None, max_length=500)

    @field_validator("relatedness")
    @classmethod
    def _relatedness(cls, value: str) -> str:
        return str(_choice(value, RELATEDNESS))

    @field_validator("outcome")
    @classmethod
    def _outcome(cls, value: str | None) -> str | None:
        return _choice(value, OUTCOMES)


class AdverseEventChange(_Strict):
    """A correction: only the fields given change (`resolved=None` given clears the date)."""

    reason: str = Field(min_length=1, max_length=1000)
    term: str | None = Field(default=None, min_length=1, max_length=200)
    grade: int | None = Field(default=None, ge=1, le=5)
    onset: date | None = None
    serious: bool | None = None
    relatedness: str | None = None
    outcome: str | None = None
    resolved: date | None = None
    action: str | None = Field(default=None, max_length=500)

    @field_validator("relatedness")
    @classmethod
    def _relatedness(cls, value: str | None) -> str | None:
        return _choice(value, RELATEDNESS)

    @field_validator("outcome")
    @classmethod
    def _outcome(cls, value: str | None) -> str | None:
        return _choice(value, OUTCOMES)

    @property
    def changed_fields(self) -> set[str]:
        return set(self.model_fields_set) - {"reason"}
