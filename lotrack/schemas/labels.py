"""Label templates (TOML in labels/): stock, text fields, barcodes and sheet layouts.

A template is refused when loaded if anything would fall outside its stock (or a sheet
outside its page), if it names a field its kind of label does not have, or if it
could print a label with no barcode or a reprint without its mark.
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from lotrack.errors import InvalidInput
from lotrack.schemas import load_toml

PT_TO_MM = 25.4 / 72
PAGES_MM = {"A4": (210.0, 297.0), "Letter": (215.9, 279.4)}

COMMON_FIELDS = frozenset({
    "sponsor", "sponsor_short", "sponsor_contact", "trial_code", "ctu", "product_code", "product_name",
    "dosage_form", "route", "storage", "fill_volume", "print_mark",
})
KIND_FIELDS = {
    "vial": COMMON_FIELDS | {"lot", "expiry", "serial", "vial_number"},
    "box": COMMON_FIELDS | {"box", "lots", "expiry", "count"},
    "dose": COMMON_FIELDS | {"dose", "subject", "group", "cycle", "perfusion", "dispensed_at",
                             "use_by", "vials", "lots", "expiry", "amount", "dispensed_by",
                             "verified_by"},
}
When = Literal["always", "gs1", "no-gs1"]


class _Strict(BaseModel):
    # defer_build: a model is built on first use, so a command pays only for what it validates.
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class Box(_Strict):
    x_mm: float = Field(ge=0)
    y_mm: float = Field(ge=0)  # from the top edge of the label
    width_mm: float = Field(gt=0)


class TextSpec(Box):
    text: str = Field(min_length=1)
    size_pt: float = Field(ge=3, le=72)
    bold: bool = False
    align: Literal["left", "center", "right"] = "left"
    when: When = "always"

    @property
    def height_mm(self) -> float:
        return self.size_pt * PT_TO_MM * 1.15

    def field_names(self) -> set[str]:
        return {name for _, name, _, _ in string.Formatter().parse(self.text) if name is not None}


class BarcodeSpec(Box):
    symbol: Literal["gs1-128", "code128", "datamatrix"]
    # gs1: the label's GS1 element string; id: its identifier (serial, box path, dose id)
    content: Literal["gs1", "id"]
    height_mm: float = Field(gt=0)
    hri: bool = False  # print the human-readable interpretation under a 1D symbol
    hri_size_pt: float = Field(default=5, ge=3, le=12)
    min_module_mm: float = Field(default=0.19, gt=0)  # narrower cannot be printed and read
    when: When = "always"

    @model_validator(mode="after")
    def _content_matches(self) -> BarcodeSpec:
        if self.content == "gs1" and self.symbol == "code128":
            raise ValueError("a GS1 element string needs symbol gs1-128 or datamatrix")
        if self.content == "id" and self.symbol == "gs1-128":
            raise ValueError("symbol gs1-128 carries only content = \"gs1\"")
        if self.content == "gs1" and self.when != "gs1":
            raise ValueError("a GS1 barcode needs when = \"gs1\" (a product without a GTIN has "
                             "no GS1 element string)")
        return self


class SheetSpec(_Strict):
    name: str = Field(pattern=r"^[a-z0-9-]{1,40}$")
    page: Literal["A4", "Letter"]
    columns: int = Field(ge=1, le=50)
    rows: int = Field(ge=1, le=100)
    left_mm: float = Field(ge=0)
    top_mm: float = Field(ge=0)
    column_pitch_mm: float = Field(gt=0)
    row_pitch_mm: float = Field(gt=0)


class TemplateHeader(_Strict):
    name: str = Field(pattern=r"^[a-z0-9-]{1,40}$")
    kind: Literal["vial", "box", "dose"]
    description: str = Field(min_length=1)
    width_mm: float = Field(gt=5, le=300)
    height_mm: float = Field(gt=5, le=300)
    margin_mm: float = Field(default=1.0, ge=0)
    min_font_pt: float = Field(default=4.0, ge=3)


class LabelTemplate(_Strict):
    template: TemplateHeader
    text: list[TextSpec] = Field(min_length=1)
    barcode: list[BarcodeSpec] = Field(min_length=1)
    sheet: list[SheetSpec] = []

    @model_validator(mode="after")
    def _fits(self) -> LabelTemplate:
        head = self.template
        problems = [*self._unknown_fields(), *self._outside_stock(), *self._sheets_off_page()]
        for case in ("gs1", "no-gs1"):
            if not any(b.when in ("always", case) for b in self.barcode):
                problems.append(f"no barcode is printed when the label is {case}")
        if not any("print_mark" in t.field_names() for t in self.text):
            problems.append("no text shows {print_mark}: reprints would not be marked")
        if len({s.name for s in self.sheet}) != len(self.sheet):
            problems.append("two sheets share a name")
        if problems:
            raise ValueError(f"template {head.name}: " + "; ".join(problems))
        return self

    def _unknown_fields(self) -> list[str]:
        allowed = KIND_FIELDS[self.template.kind]
        out = []
        for spec in self.text:
            try:
                names = spec.field_names()
            except ValueError as exc:
                out.append(f"text {spec.text!r} is not a valid template: {exc}")
                continue
            out += [f"text {spec.text!r} names unknown field {{{n}}} (a {self.template.kind} "
                    f"label has: {', '.join(sorted(allowed))})" for n in sorted(names - allowed)]
        return out

    def _outside_stock(self) -> list[str]:
        head = self.template
        right, bottom = head.width_mm - head.margin_mm, head.height_mm - head.margin_mm
        out = []
        boxes: list[tuple[str, Box, float]] = [(f"text {t.text!r}", t, t.height_mm) for t in self.text]
        boxes += [(f"{b.symbol} barcode", b, b.height_mm) for b in self.barcode]
        for what, box, height in boxes:
            if (box.x_mm < head.margin_mm or box.y_mm < head.margin_mm
                    or box.x_mm + box.width_mm > right + 1e-9 or box.y_mm + height > bottom + 1e-9):
                out.append(f"{what} at ({box.x_mm:g}, {box.y_mm:g}) mm, {box.width_mm:g} x "
                           f"{height:.2f} mm, falls outside the {head.width_mm:g} x "
                           f"{head.height_mm:g} mm stock less its {head.margin_mm:g} mm margin")
        return out

    def _sheets_off_page(self) -> list[str]:
        head = self.template
        out = []
        for sheet in self.sheet:
            page_w, page_h = PAGES_MM[sheet.page]
            used_w = sheet.left_mm + (sheet.columns - 1) * sheet.column_pitch_mm + head.width_mm
            used_h = sheet.top_mm + (sheet.rows - 1) * sheet.row_pitch_mm + head.height_mm
            if used_w > page_w or used_h > page_h:
                out.append(f"sheet {sheet.name} needs {used_w:.1f} x {used_h:.1f} mm but "
                           f"{sheet.page} is {page_w:g} x {page_h:g} mm")
            if sheet.column_pitch_mm < head.width_mm or sheet.row_pitch_mm < head.height_mm:
                out.append(f"sheet {sheet.name}: labels overlap (pitch smaller than the label)")
        return out

    def sheet_named(self, name: str | None) -> SheetSpec | None:
        """None is a thermal roll: one label per page, the page the size of the label."""
        if name in (None, "roll"):
            return None
        for sheet in self.sheet:
            if sheet.name == name:
                return sheet
        names = ", ".join(["roll", *(s.name for s in self.sheet)])
        raise InvalidInput(f"template {self.template.name} has no sheet {name!r} (it has: {names})")


def read_template(path: Path) -> LabelTemplate:
    return load_toml(LabelTemplate, path, "label template")
