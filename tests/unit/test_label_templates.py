"""Label templates: the shipped ones load; a bad one is refused with its reason."""

import tomllib
from pathlib import Path

import pytest

from lotrack.errors import InvalidInput
from lotrack.schemas.labels import read_template
from lotrack.services.labels import list_templates, load_template, templates_dir

SHIPPED = Path(__file__).resolve().parents[2] / "labels"


def test_the_shipped_templates_cover_vial_box_and_dose_with_a4_and_letter_sheets():
    templates = {t.template.name: t for t in list_templates()}
    assert {"cryovial", "box", "dose"} <= set(templates)
    assert (templates["cryovial"].template.width_mm, templates["cryovial"].template.height_mm) == (38, 13)
    assert (templates["dose"].template.width_mm, templates["dose"].template.height_mm) == (70, 36)
    for template in templates.values():
        assert {s.name for s in template.sheet} == {"a4", "letter"}
    assert templates_dir().resolve() in (SHIPPED.resolve(), templates_dir().resolve())


def _variant(tmp_path: Path, name: str, edit) -> Path:
    data = tomllib.loads((SHIPPED / f"{name}.toml").read_text())
    edit(data)
    path = tmp_path / "variant.toml"
    path.write_text(_to_toml(data))
    return path


def _to_toml(data: dict) -> str:
    def value(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        return repr(v)

    lines = ["[template]"] + [f"{k} = {value(v)}" for k, v in data["template"].items()]
    for table in ("text", "barcode", "sheet"):
        for row in data.get(table, []):
            lines += ["", f"[[{table}]]"] + [f"{k} = {value(v)}" for k, v in row.items()]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("edit, reason", [
    (lambda d: d["text"][1].update(x_mm=30.0), "falls outside the 38 x 13 mm stock"),
    (lambda d: d["text"][1].update(y_mm=12.0), "falls outside"),
    (lambda d: d["barcode"][0].update(width_mm=40.0), "datamatrix barcode at"),
    (lambda d: d["text"][2].update(text="LOT {lot} {batch_code}"), "unknown field {batch_code}"),
    (lambda d: d["text"][2].update(text="LOT {lot"), "not a valid template"),
    (lambda d: d["sheet"][0].update(rows=30), "sheet a4 needs"),
    (lambda d: d["sheet"][0].update(column_pitch_mm=30.0), "labels overlap"),
    (lambda d: [t.update(text="x") for t in d["text"] if "print_mark" in t["text"]],
     "reprints would not be marked"),
    (lambda d: d["barcode"][0].update(when="always"), "needs when"),
    (lambda d: d["barcode"][0].update(symbol="code128"), "needs symbol gs1-128 or datamatrix"),
    (lambda d: d["template"].update(colour="red"), "Extra inputs"),
])
def test_a_bad_template_is_refused_when_loaded_with_the_reason(tmp_path, edit, reason):
    path = _variant(tmp_path, "cryovial", edit)
    with pytest.raises(InvalidInput, match=reason.replace("{", r"\{").replace("}", r"\}")):
        read_template(path)


def test_a_template_of_another_kind_or_an_unknown_name_is_refused(tmp_path):
    with pytest.raises(InvalidInput, match="for vial labels, not dose labels"):
        load_template("cryovial", "dose")
    with pytest.raises(Exception, match="no label template 'nope'"):
        load_template("nope", "vial")
    broken = tmp_path / "broken.toml"
    broken.write_text("[template\n")
    with pytest.raises(InvalidInput, match="not valid TOML"):
        load_template(str(broken), "vial")
