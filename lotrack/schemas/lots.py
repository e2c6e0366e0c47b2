"""Products, specification files, lot registrations and QC rows, validated at the boundary."""

from __future__ import annotations

import functools
import math
import re
import tomllib
from datetime import date, time
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from lotrack.schemas import load_toml

CODE = r"^[A-Za-z0-9_-]{1,40}$"
# GS1 AI (10) allows up to 20 characters of the GS1 character set; we keep to a safe subset.
LOT_NUMBER = r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,19}$"


class _Strict(BaseModel):
    # defer_build: a model is built on first use, so a command pays only for what it validates.
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True,
                              defer_build=True)


def gtin_check_digit(body: str) -> str:
    """GS1 mod-10 check digit over the first 13 digits of a GTIN-14."""
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return str((10 - total % 10) % 10)


class ProductIn(_Strict):
    code: str = Field(pattern=CODE)
    name: str = Field(min_length=1, max_length=200)
    kind: str = "active"
    gtin: str | None = None
    storage_condition: str = Field(default="Store at or below -70 C", max_length=100)
    storage_max_c: float = Field(default=-70, ge=-273, le=40)
    shelf_life_days: int = Field(default=365, gt=0, le=3650)
    post_thaw_hours: float = Field(default=4, gt=0, le=168)
    fill_volume_ml: float = Field(default=1.0, gt=0, le=1000)
    dosage_form: str = Field(default="Suspension for intrauterine perfusion", max_length=100)
    route: str = Field(default="Intrauterine", max_length=100)
    # RTSM offsets: a vial is not dispensed, or not shipped, this many days before expiry.
    do_not_dispense_days: int = Field(default=0, ge=0, le=3650)
    do_not_ship_days: int = Field(default=0, ge=0, le=3650)

    @model_validator(mode="after")
    def _offsets(self) -> ProductIn:
        # A vial shipped inside the do-not-dispense offset would arrive unusable.
        if self.do_not_ship_days < self.do_not_dispense_days:
            raise ValueError(f"the do-not-ship offset ({self.do_not_ship_days} days) must be at "
                             f"least the do-not-dispense offset ({self.do_not_dispense_days} days)")
        return self

    @field_validator("kind")
    @classmethod
    def _kind(cls, value: str) -> str:
        if value not in ("active", "placebo", "vehicle"):
            raise ValueError("must be active, placebo or vehicle")
        return value

    @field_validator("gtin")
    @classmethod
    def _gtin(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not re.fullmatch(r"\d{14}", value):
            raise ValueError("a GTIN-14 has exactly 14 digits")
        if gtin_check_digit(value[:13]) != value[13]:
            raise ValueError(f"check digit of GTIN {value} should be {gtin_check_digit(value[:13])}")
        return value


class SpecAttributeIn(_Strict):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,99}$")
    label: str = Field(min_length=1, max_length=200)
    unit: str = Field(min_length=1, max_length=40)
    method: str = Field(min_length=1, max_length=200)
    min: float | None = None
    max: float | None = None
    expected: str | None = None
    required: bool = True
    # Alert limits (SENAITE's "shoulders"): inside the specification limits; a result
    # beyond them still passes but is flagged for QA.
    alert_min: float | None = None
    alert_max: float | None = None

    @model_validator(mode="after")
    def _limits(self) -> SpecAttributeIn:
        numeric = self.min is not None or self.max is not None
        if numeric == (self.expected is not None):
            raise ValueError(f"{self.name}: give numeric limits (min and/or max) or an expected "
                             "result, not both or neither")
        for bound in (self.min, self.max, self.alert_min, self.alert_max):
            if bound is not None and not math.isfinite(bound):
                raise ValueError(f"{self.name}: limits must be finite numbers")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"{self.name}: min is above max")
        self._check_alert_limits()
        return self

    def _check_alert_limits(self) -> None:
        if self.alert_min is None and self.alert_max is None:
            return
        if not numeric_limits(self):
            raise ValueError(f"{self.name}: alert limits need numeric specification limits")
        if self.alert_min is not None:
            if self.min is None:
                raise ValueError(f"{self.name}: alert_min needs a min to lie inside")
            if not self.min < self.alert_min:
                raise ValueError(f"{self.name}: alert_min {self.alert_min:g} must be above min "
                                 f"{self.min:g}")
            if self.max is not None and not self.alert_min < self.max:
                raise ValueError(f"{self.name}: alert_min {self.alert_min:g} must be below max "
                                 f"{self.max:g}")
        if self.alert_max is not None:
            if self.max is None:
                raise ValueError(f"{self.name}: alert_max needs a max to lie inside")
            if not self.alert_max < self.max:
                raise ValueError(f"{self.name}: alert_max {self.alert_max:g} must be below max "
                                 f"{self.max:g}")
            if self.min is not None and not self.min < self.alert_max:
                raise ValueError(f"{self.name}: alert_max {self.alert_max:g} must be above min "
                                 f"{self.min:g}")
        if (self.alert_min is not None and self.alert_max is not None
                and self.alert_min > self.alert_max):
            raise ValueError(f"{self.name}: alert_min is above alert_max")

    @property
    def numeric(self) -> bool:
        return self.expected is None


def numeric_limits(attr: SpecAttributeIn) -> bool:
    return attr.min is not None or attr.max is not None


class SpecFile(_Strict):
    product: str = Field(pattern=CODE)
    attributes: list[SpecAttributeIn] = Field(min_length=1)

    @field_validator("attributes")
    @classmethod
    def _unique(cls, attributes: list[SpecAttributeIn]) -> list[SpecAttributeIn]:
        names = [a.name for a in attributes]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"attribute names repeated: {', '.join(duplicates)}")
        return attributes

    def attribute(self, name: str) -> SpecAttributeIn | None:
        return next((a for a in self.attributes if a.name == name), None)


def load_spec_file(path: Path) -> SpecFile:
    return load_toml(SpecFile, path, "specification file")


def shipped_spec_path(product_code: str) -> Path:
    name = {"IPSEXO": "spec-ips-exo.toml", "PLACEBO": "spec-placebo.toml"}[product_code]
    return Path(__file__).resolve().parent.parent / "data" / name


EXAMPLE_QC_RESULTS_PATH = Path(__file__).resolve().parent.parent / "data" / "qc-example-results.toml"


@functools.cache
def _example_results(product_code: str) -> tuple[tuple[str, str, str], ...]:
    tables = tomllib.loads(EXAMPLE_QC_RESULTS_PATH.read_text(encoding="utf-8"))
    spec = load_spec_file(shipped_spec_path(product_code))
    # The unit is the specification's: one place to change it.
    return tuple((name, value, spec.attribute(name).unit)
                 for name, value in tables[product_code].items())


def example_qc_results(product_code: str) -> list[tuple[str, str, str]]:
    """QC results that pass the shipped specification of `product_code`, as (attribute,
    value, unit), in the order of lotrack/data/qc-example-results.toml: for tests,
    benchmarks and the demo."""
    return list(_example_results(product_code))


def example_qc_rows(product_code: str, tested_on: date, method: str = "",
                    analyst: str = "QC analyst") -> list[QcRowIn]:
    """The passing example results of `product_code` as QC rows ready to record."""
    return [QcRowIn(attribute=name, value=value, unit=unit, method=method, tested_on=tested_on,
                    analyst=analyst) for name, value, unit in _example_results(product_code)]


class LotIn(_Strict):
    lot_number: str = Field(pattern=LOT_NUMBER)
    product: str = Field(pattern=CODE)
    manufactured_on: date
    expiry_on: date
    # The time of day the lot expires, site time; none: the end of the expiry day.
    expiry_time: time | None = None
    vials: int = Field(gt=0, le=100_000)
    cell_line: str = Field(default="not applicable", min_length=1, max_length=100)
    cell_bank_id: str = Field(default="not applicable", min_length=1, max_length=100)
    passage: int = Field(default=0, ge=0, le=200)
    fill_volume_ml: float | None = Field(default=None, gt=0, le=1000)

    @field_validator("expiry_time")
    @classmethod
    def _site_time(cls, value: time | None) -> time | None:
        # Stored as a time of day without a zone: an offset would be dropped on the way in
        # (and the audit trail would then hold another time than the record).
        if value is not None and value.tzinfo is not None:
            raise ValueError("the expiry time is site time: give it without an offset or Z")
        return value

    @model_validator(mode="after")
    def _dates(self) -> LotIn:
        if self.expiry_on <= self.manufactured_on:
            raise ValueError(f"expiry {self.expiry_on} must follow manufacture "
                             f"{self.manufactured_on}")
        return self


class QcRowIn(_Strict):
    attribute: str = Field(min_length=1, max_length=100)
    value: str = Field(min_length=1, max_length=200)
    unit: str = Field(min_length=1, max_length=40)
    method: str = Field(default="", max_length=200)
    tested_on: date
    analyst: str = Field(min_length=1, max_length=100)
