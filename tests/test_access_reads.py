"""The one read path's pure parts: strictest, sight, visible_content, Redaction."""

from __future__ import annotations

import pytest

from crm.access.policy import Level, Viewer
from crm.access.reads import Redaction, sight, strictest, visible_content


@pytest.mark.parametrize(("values", "expected"), [
    ((), "standard"), (("standard",), "standard"), (("standard", "medical"), "medical"),
    (("pv", "medical", "standard"), "pv"), (("medical", None), "medical"), (("standard", "unknown"), "unknown"),
])
def test_strictest(values, expected):
    assert strictest(*values) == expected


@pytest.mark.parametrize(("role", "seen"), [
    ("field_rep", ["standard"]), ("marketer", ["standard"]), ("call_centre", ["standard", "medical", "pv"]),
    ("medical", ["standard", "medical", "pv"]), ("compliance", ["standard", "medical", "pv"]),
    ("admin", ["standard", "medical", "pv"]), ("nobody", []),
])
def test_visible_content_per_role(role, seen):
    assert visible_content(Viewer(1, role)) == seen


def test_sight_marks_say_why():
    seen = sight(Viewer(1, "marketer"), "pv")
    assert seen.level == Level.EXISTENCE and not seen.full and not seen.summary
    assert seen.marks() == {"redacted": True, "redaction_reason": "Details restricted to Pharmacovigilance",
                            "visibility": {"level": "existence", "rule": "pv-restricted",
                                           "reason": "Details restricted to Pharmacovigilance"}}
    full = sight(Viewer(1, "medical"), "pv")
    assert full.full and full.marks()["redacted"] is False and full.marks()["redaction_reason"] is None


def test_redaction_by_level():
    redaction = Redaction(below_full={"notes": None, "follow_up.text": "", "summary": lambda r: r["safe"]},
                          below_summary={"products": lambda r: [], "follow_up": None})
    record = {"safe": "Visit"}

    def out():
        return {"notes": "n", "summary": "s", "products": ["A"], "follow_up": {"date": "d", "text": "t"}}

    full = sight(Viewer(1, "medical"), "medical")
    existence = sight(Viewer(1, "field_rep"), "medical")
    assert redaction.apply(out(), record, full) == out()
    assert redaction.apply(out(), record, existence) == {"notes": None, "summary": "Visit", "products": [],
                                                         "follow_up": None}
    summary = type(full)(Level.SUMMARY, "r", "why")
    assert redaction.apply(out(), record, summary) == {"notes": None, "summary": "Visit", "products": ["A"],
                                                       "follow_up": {"date": "d", "text": ""}}
    # a dotted name leaves a missing parent alone
    assert redaction.apply({"follow_up": None}, record, summary) == {"follow_up": None, "notes": None,
                                                                     "summary": "Visit"}


def test_a_logged_read_needs_a_session():
    from crm.access.reads import Shape, read_records

    shape = Shape(what="interaction", sensitivity=lambda r: "pv", dump=lambda r, seen: {"id": r},
                  redaction=Redaction(), logged=lambda r: ((r, None),))
    with pytest.raises(ValueError, match="session"):
        read_records(None, Viewer(1, "medical"), [1], shape)
    assert read_records(None, Viewer(1, "medical"), [1], shape, log=False)[0]["redacted"] is False
