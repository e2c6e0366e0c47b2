"""Screening values typed at enrolment, validated before any rule sees them."""

from __future__ import annotations

from datetime import date

from pydantic import BaseModel, ConfigDict, Field, field_validator

from lotrack.errors import InvalidInput
from lotrack.services.eligibility import Candidate

YES = {"yes", "y", "true", "1"}
NO = {"no", "n", "false", "0"}


class Screening(BaseModel):
    # defer_build: a model is built on first use, so a command pays only for what it validates.
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    sex: str | None = None
    birth_date: date | None = None
    consented: date
    iua_score: int | None = Field(default=None, ge=0, le=28)
    amh: float | None = Field(default=None, ge=0, le=100)
    afc: int | None = Field(default=None, ge=0, le=200)
    platelets: float | None = Field(default=None, ge=0, le=5000)
    aptt: float | None = Field(default=None, gt=0, le=20)
    hba1c: float | None = Field(default=None, gt=0, le=30)
    answers: dict[str, bool] = Field(default_factory=dict)

    @field_validator("sex")
    @classmethod
    def _sex(cls, value: str | None) -> str | None:
        if value is None:
            return None
        upper = value.strip().upper()
        if upper not in ("F", "M"):
            raise ValueError("must be F or M")
        return upper

    def candidate(self) -> Candidate:
        return Candidate(sex=self.sex, birth_date=self.birth_date, consented=self.consented,
                         iua_score=self.iua_score, amh_ng_ml=self.amh, afc=self.afc,
                         platelets_10e9_l=self.platelets, aptt_x_uln=self.aptt,
                         hba1c_percent=self.hba1c, answers=dict(self.answers))


def parse_answers(pairs: tuple[str, ...]) -> dict[str, bool]:
    """`CODE=yes|no` pairs; every malformed pair is named."""
    answers: dict[str, bool] = {}
    bad: list[str] = []
    for pair in pairs:
        code, sep, value = pair.partition("=")
        word = value.strip().lower()
        if not sep or not code.strip() or word not in YES | NO:
            bad.append(pair)
            continue
        answers[code.strip()] = word in YES
    if bad:
        raise InvalidInput(f"answers must be CODE=yes or CODE=no; not {', '.join(map(repr, bad))}")
    return answers
