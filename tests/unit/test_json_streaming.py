"""JSON written a part at a time is the same text as the whole written at once."""

import pytest

from lotrack.render.tables import json_array, json_with_list, to_json

CONTENT = {"document": "batch-to-batch consistency", "lots": [{"lot": "EXO-1"}],
           "numeric": None, "notes": ["é, \u00b5g/mL"], "summary": {"lots": 1}}
SECTIONS = [{"name": "ph", "points": [{"value": 7.1, "rules": []}], "computed": True},
            {"name": "osmolality", "points": [], "notes": ["n/c"], "x": None}]


@pytest.mark.parametrize("items", [SECTIONS, SECTIONS[:1], []])
def test_a_list_inside_an_object_keeps_its_place_and_its_text(items):
    whole = to_json({**CONTENT, "numeric": items})
    assert "".join(json_with_list(CONTENT, "numeric", iter(items))) == whole


@pytest.mark.parametrize("items", [SECTIONS, []])
def test_a_list_on_its_own(items):
    assert "".join(json_array(iter(items))) == to_json(items)
