"""CTCAE v5.0 coding of adverse event terms, from the shipped term file.

A verbatim term that is a CTCAE term, or an alias of one, is coded to it with its
system organ class; any other term is kept verbatim and flagged for coding by the
medical coder (it is never refused: the event must be on record at once).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from lotrack.errors import InvalidInput
from lotrack.schemas.safety import CtcaeTerm, load_ctcae_file, normalise_term, shipped_ctcae_path

CTCAE_VERSION = "5.0"


@dataclass(frozen=True)
class Coding:
    verbatim: str
    term: str | None  # the CTCAE term, None when the verbatim term needs coding
    soc: str | None
    grades: tuple[int, ...] = (1, 2, 3, 4, 5)

    @property
    def needs_coding(self) -> bool:
        return self.term is None


@lru_cache(maxsize=1)
def _index() -> dict[str, CtcaeTerm]:
    index: dict[str, CtcaeTerm] = {}
    for entry in load_ctcae_file(shipped_ctcae_path()).terms:
        for name in (entry.term, *entry.aliases):
            index[normalise_term(name).casefold()] = entry
    return index


def terms() -> list[CtcaeTerm]:
    return sorted({id(t): t for t in _index().values()}.values(), key=lambda t: (t.soc, t.term))


def code_term(verbatim: str) -> Coding:
    text = normalise_term(verbatim)
    if not text:
        raise InvalidInput("an adverse event needs a term")
    entry = _index().get(text.casefold())
    if entry is None:
        return Coding(text, None, None)
    return Coding(text, entry.term, entry.soc, entry.grades)


def check_grade(coding: Coding, grade: int) -> None:
    if grade not in range(1, 6):
        raise InvalidInput(f"grade {grade} is not a CTCAE grade (1 to 5)")
    if grade not in coding.grades:
        allowed = ", ".join(str(g) for g in coding.grades)
        raise InvalidInput(f"CTCAE v{CTCAE_VERSION} has no grade {grade} for "
                           f"{coding.term!r}: its grades are {allowed}")
