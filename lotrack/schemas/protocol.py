"""The protocol file (TOML): groups, the treatment cycle, eligibility; validated on load."""

from __future__ import annotations

import itertools
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from lotrack.errors import InvalidInput
from lotrack.schemas import parse

CODE = r"^[A-Za-z0-9_-]{1,40}$"


class _Strict(BaseModel):
    # defer_build: a model is built on first use, so a command pays only for what it validates.
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class ProtocolHeader(_Strict):
    code: str = Field(pattern=CODE)
    title: str = Field(min_length=1)
    sponsor: str = Field(min_length=1)
    # The name printed where a label has no room for the full one, and the contact
    # (address, telephone) EU CTR Annex VI asks for on labels.
    sponsor_short: str | None = Field(default=None, min_length=1, max_length=40)
    sponsor_contact: str = ""
    target_enrolment: int = Field(gt=0)
    max_cycles: int = Field(ge=1, le=10)
    max_hours_dispense_to_administer: float = Field(gt=0, le=72)
    follow_up_hysteroscopy_day: int = Field(default=30, gt=0)


class Group(_Strict):
    code: str = Field(pattern=CODE)
    name: str = Field(min_length=1)
    product: str = Field(pattern=CODE)
    vials_per_perfusion: int = Field(ge=1, le=20)
    planned: int = Field(ge=0)


class Perfusion(_Strict):
    number: int = Field(ge=1)
    target_hours: float = Field(ge=0)
    window_hours: float = Field(ge=0)


class Cycle(_Strict):
    perfusions: list[Perfusion] = Field(min_length=1)

    @field_validator("perfusions")
    @classmethod
    def _numbered_in_time_order(cls, perfusions: list[Perfusion]) -> list[Perfusion]:
        numbers = [p.number for p in perfusions]
        if numbers != list(range(1, len(perfusions) + 1)):
            raise ValueError(f"perfusions must be numbered 1..{len(perfusions)} in order")
        for a, b in itertools.pairwise(perfusions):
            if b.target_hours - b.window_hours <= a.target_hours + a.window_hours:
                raise ValueError(f"the windows of perfusions {a.number} and {b.number} overlap")
        return perfusions


class Question(_Strict):
    code: str = Field(pattern=CODE)
    question: str = Field(min_length=1)


class Eligibility(_Strict):
    age_min: int = Field(ge=0)
    age_max: int = Field(le=130)
    iua_score_min: int = Field(ge=0)
    iua_score_max: int = Field(ge=0)
    amh_min_ng_ml: float = Field(ge=0)
    afc_min: int = Field(ge=0)
    platelets_min_10e9_l: float = Field(ge=0)
    aptt_max_x_uln: float = Field(gt=0)
    hba1c_max_percent: float = Field(gt=0)
    inclusions: list[Question] = Field(default_factory=list)
    exclusions: list[Question] = Field(default_factory=list)

    @model_validator(mode="after")
    def _ranges(self) -> Eligibility:
        if self.age_min > self.age_max:
            raise ValueError("age_min is above age_max")
        if self.iua_score_min > self.iua_score_max:
            raise ValueError("iua_score_min is above iua_score_max")
        codes = [q.code for q in self.inclusions + self.exclusions]
        if len(codes) != len(set(codes)):
            raise ValueError("question codes must be unique")
        return self


class Supply(_Strict):
    # What a product's do-not-dispense offset counts back from: the dispensing itself, or
    # the planned time of the cycle's last perfusion (so that a vial dispensed for
    # perfusion 1 would still have been in date for the whole cycle).
    do_not_dispense_reference: Literal["dispensing", "last_perfusion"] = "dispensing"


class ProtocolFile(_Strict):
    protocol: ProtocolHeader
    groups: list[Group] = Field(min_length=1)
    cycle: Cycle
    eligibility: Eligibility
    supply: Supply = Field(default_factory=Supply)

    @model_validator(mode="after")
    def _groups(self) -> ProtocolFile:
        codes = [g.code for g in self.groups]
        if len(codes) != len(set(codes)):
            raise ValueError("group codes must be unique")
        planned = sum(g.planned for g in self.groups)
        if planned != self.protocol.target_enrolment:
            raise ValueError(f"the groups plan {planned} participants but target_enrolment "
                             f"is {self.protocol.target_enrolment}")
        return self

    def group(self, code: str) -> Group:
        for group in self.groups:
            if group.code == code:
                return group
        known = ", ".join(g.code for g in self.groups)
        raise InvalidInput(f"unknown group {code!r}; the protocol's groups are {known}")


def load_protocol_text(text: str, source: str) -> ProtocolFile:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidInput(f"{source} is not valid TOML: {exc}") from None
    return parse(ProtocolFile, data, what=f"protocol file {source}")


def load_protocol_file(path: Path) -> ProtocolFile:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidInput(f"cannot read protocol file {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"protocol file {path.name} is not UTF-8 text (byte {exc.start})") from None
    return load_protocol_text(text, str(path))


def default_protocol_path() -> Path:
    return Path(__file__).resolve().parent.parent / "data" / "protocol-ips-exo-iua.toml"
