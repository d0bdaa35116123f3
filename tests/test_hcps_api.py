"""HCP master data over the API: create, read, update, rights per role, masking, errors, audit, HCOs."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select, text

from crm.audit.models import AuditRecord
from crm.hcps.identifiers import make_npi
from crm.hcps.models import HCO, Affiliation, HCPIdentifier, HCPTerritoryAssignment
from crm.hcps.schemas import HCOOutSchema, HCPOutSchema
from tests.conftest import days_ago

EMAIL = "jane.doe@hospital.org"


def body(home, **kw):
    data = {"first_name": "Jane", "last_name": "Doe", "profession": "specialist", "specialty": "Cardiology",
            "email": EMAIL, "phone": "+1 555 123 4567", "territory": home.code,
            "identifiers": {"npi": make_npi(4242)}}
    data.update(kw)
    return data


class World(dict):
    """Two territories and one user per role, each user made on first use (password hashing is slow)."""

    ROLES = {"admin": ("admin", None), "rep": ("field_rep", "north"), "rep_south": ("field_rep", "south"),
             "marketer": ("marketer", None), "call_centre": ("call_centre", None), "medical": ("medical", None),
             "compliance": ("compliance", None)}

    def __init__(self, factory):
        super().__init__(north=factory.territory("NORTH", "North"), south=factory.territory("SOUTH", "South"))
        self.factory = factory

    def __missing__(self, key):
        role, home = self.ROLES[key]
        self[key] = self.factory.user(role, territories=[self[home]] if home else [])
        return self[key]


@pytest.fixture
def world(factory):
    return World(factory)


# -- create ----------------------------------------------------------------------------------------

def test_admin_creates_an_hcp_anywhere(api, world, db):
    resp = api(world["admin"]).post("/api/v1/hcps", json=body(world["south"], tags=["kol", "cardio"],
                                                              address_line="1 Heart St", city="Boston"))
    assert resp.status_code == 201, resp.get_json()
    out = resp.get_json()
    assert resp.headers["Location"] == f"/api/v1/hcps/{out['id']}"
    assert out["full_name"] == "Jane Doe"
    assert out["territory"] == {"code": "SOUTH", "name": "South"}
    assert out["identifiers"] == {"npi": make_npi(4242)}
    assert out["email"] == EMAIL and out["contact_data"]["visible"] is True
    assert out["tags"] == ["kol", "cardio"] and out["version"] == 1 and out["merged_into"] is None
    assert "merged_into_url" not in out
    assert out["created_at"].endswith("Z") and out["updated_at"].endswith("Z")
    # email is stored encrypted, with a blind index
    raw = db.execute(text("SELECT email, email_bidx FROM hcps WHERE id = :i"), {"i": out["id"]}).one()
    assert "hospital" not in raw.email and raw.email_bidx
    history = db.scalars(select(HCPTerritoryAssignment).where(HCPTerritoryAssignment.hcp_id == out["id"])).all()
    assert [(h.territory_id, h.valid_to) for h in history] == [(world["south"].id, None)]


def test_rep_creates_in_own_territory_but_not_elsewhere(api, world):
    rep = api(world["rep"])
    assert rep.post("/api/v1/hcps", json=body(world["north"])).status_code == 201
    resp = rep.post("/api/v1/hcps", json=body(world["south"], email="other@x.org",
                                               identifiers={"npi": make_npi(7)}))
    assert resp.status_code == 403
    assert resp.get_json()["rule"] == "hcp.create:territory"
    assert "territor" in resp.get_json()["detail"]
    no_territory = rep.post("/api/v1/hcps", json=body(world["north"], territory=None, email="n@x.org",
                                                       identifiers={}))
    assert no_territory.status_code == 403


@pytest.mark.parametrize("role", ["marketer", "call_centre", "medical", "compliance"])
def test_other_roles_cannot_create(api, world, role):
    resp = api(world[role]).post("/api/v1/hcps", json=body(world["north"]))
    assert resp.status_code == 403
    assert resp.get_json()["rule"] == "hcp.create:role"


def test_unknown_territory_code_is_422(api, world):
    resp = api(world["admin"]).post("/api/v1/hcps", json=body(world["north"], territory="NOWHERE"))
    assert resp.status_code == 422
    assert "territory" in resp.get_json()["errors"]


@pytest.mark.parametrize("npi", ["1234567890", "123456789", "12345abcd3", "１２３４５６７８９３"])
def test_bad_npi_is_422(api, world, npi):
    resp = api(world["admin"]).post("/api/v1/hcps", json=body(world["north"], identifiers={"npi": npi}))
    assert resp.status_code == 422
    assert "identifiers.npi" in resp.get_json()["errors"]


def test_duplicate_npi_and_duplicate_email_are_409(api, world, db):
    admin = api(world["admin"])
    first = admin.post("/api/v1/hcps", json=body(world["north"])).get_json()
    same_npi = admin.post("/api/v1/hcps", json=body(world["north"], email="someone@else.org"))
    assert same_npi.status_code == 409
    assert same_npi.get_json()["existing_id"] == first["id"]
    # the blind index normalises case
    same_email = admin.post("/api/v1/hcps", json=body(world["north"], email="JANE.Doe@Hospital.ORG",
                                                      identifiers={"npi": make_npi(99)}))
    assert same_email.status_code == 409
    assert db.scalar(select(HCPIdentifier).where(HCPIdentifier.value == make_npi(99))) is None


@pytest.mark.parametrize("payload, field", [
    ({"shoe_size": 44}, "shoe_size"),
    ({"profession": "wizard"}, "profession"),
    ({"first_name": "   "}, "first_name"),
    ({"email": "not-an-email"}, "email"),
    ({"identifiers": {"NPI!": "1"}}, "identifiers"),
    ({"tags": ["a,b"]}, "tags.0"),
    ({"country": "usa"}, "country"),
])
def test_invalid_fields_are_422(api, world, payload, field):
    resp = api(world["admin"]).post("/api/v1/hcps", json=body(world["north"], **payload))
    assert resp.status_code == 422
    errors = resp.get_json()["errors"]
    assert any(k == field or k.startswith(field) for k in errors), errors


def test_missing_required_fields_and_malformed_json(api, world, client):
    admin = api(world["admin"])
    resp = admin.post("/api/v1/hcps", json={"first_name": "A"})
    assert resp.status_code == 422
    assert {"last_name", "profession"} <= set(resp.get_json()["errors"])
    bad = client.post("/api/v1/hcps", data="{nope", content_type="application/json",
                      headers={"Authorization": f"Bearer {admin.token}"})
    assert bad.status_code == 400 and bad.mimetype == "application/problem+json"


def test_create_is_audited_without_personal_data(api, world, db):
    out = api(world["admin"]).post("/api/v1/hcps", json=body(world["north"], address_line="1 Heart St")).get_json()
    rec = db.scalar(select(AuditRecord).where(AuditRecord.entity == "hcp", AuditRecord.entity_id == str(out["id"])))
    assert rec.action == "hcp.create" and rec.actor_id == world["admin"].id
    dumped = json.dumps(rec.changes)
    assert EMAIL not in dumped and "555" not in dumped and "Heart" not in dumped
    assert rec.changes["email"]["after"] == "[personal data withheld]"
    assert rec.changes["last_name"]["after"] == "[personal data withheld]"  # names too (issue 11, item 5)
    assert rec.changes["territory"]["after"] == "NORTH"


# -- read and masking ------------------------------------------------------------------------------

@pytest.mark.parametrize("role, visible, rule", [
    ("rep", True, "contact-data-own-territory"),
    ("rep_south", False, "contact-data-outside-territory"),
    ("marketer", False, "contact-data-masked"),
    ("call_centre", True, "contact-data-role"),
    ("medical", True, "contact-data-role"),
    ("compliance", True, "contact-data-role"),
    ("admin", True, "contact-data-role"),
])
def test_contact_data_clear_or_masked_per_role(api, world, factory, role, visible, rule):
    hcp = factory.hcp(world["north"], email=EMAIL, phone="+1 555 123 4567", address_line="1 Heart St")
    resp = api(world[role]).get(f"/api/v1/hcps/{hcp.id}")
    assert resp.status_code == 200
    out = resp.get_json()
    assert out["contact_data"]["visible"] is visible and out["contact_data"]["rule"] == rule
    assert out["contact_data"]["reason"]
    if visible:
        assert (out["email"], out["phone"], out["address_line"]) == (EMAIL, "+1 555 123 4567", "1 Heart St")
    else:
        assert out["email"] == "j***@h***.org"
        assert out["phone"] == "+* *** *** **67"
        assert out["address_line"] == "1***"
    # names and professional data are shared with everyone
    assert out["last_name"] == hcp.last_name and out["city"] == "Springfield"


def test_output_matches_the_documented_schema(api, world, factory, db):
    hcp = factory.hcp(world["north"])
    hco = HCO(name="General Hospital", kind="hospital")
    db.add(hco)
    db.flush()
    db.add(Affiliation(hcp_id=hcp.id, hco_id=hco.id, role="Head of cardiology"))
    db.add(Affiliation(hcp_id=hcp.id, hco_id=hco.id, role="former", valid_from=days_ago(400),
                       valid_to=days_ago(30)))
    db.flush()
    out = api(world["marketer"]).get(f"/api/v1/hcps/{hcp.id}").get_json()
    assert set(out) == set(HCPOutSchema().fields) - {"merged_into_url"}
    assert out["affiliations"] == [{"hco_id": hco.id, "name": "General Hospital", "kind": "hospital",
                                    "role": "Head of cardiology"}]
    listed = api(world["marketer"]).get("/api/v1/hcos").get_json()
    assert set(listed["items"][0]) == set(HCOOutSchema().fields)


def test_unknown_hcp_is_404(api, world):
    c = api(world["marketer"])
    assert c.get("/api/v1/hcps/999999").status_code == 404
    assert api(world["admin"]).patch("/api/v1/hcps/999999", json={"version": 1}).status_code == 404


def test_merged_hcp_is_returned_and_says_so(api, world, factory):
    survivor = factory.hcp(world["north"])
    loser = factory.hcp(world["north"], merged_into_id=survivor.id, status="merged")
    out = api(world["marketer"]).get(f"/api/v1/hcps/{loser.id}").get_json()
    assert out["merged_into"] == survivor.id
    assert out["merged_into_url"] == f"/api/v1/hcps/{survivor.id}"
    resp = api(world["admin"]).patch(f"/api/v1/hcps/{loser.id}", json={"version": loser.version, "city": "X"})
    assert resp.status_code == 409 and resp.get_json()["merged_into"] == survivor.id


# -- update ----------------------------------------------------------------------------------------

def test_patch_changes_only_the_fields_sent(api, world, factory, db):
    hcp = factory.hcp(world["north"], specialty="Cardiology", city="Springfield")
    resp = api(world["admin"]).patch(f"/api/v1/hcps/{hcp.id}", json={"version": 1, "specialty": "Oncology"})
    assert resp.status_code == 200, resp.get_json()
    out = resp.get_json()
    assert out["specialty"] == "Oncology" and out["city"] == "Springfield" and out["version"] == 2
    rec = db.scalars(select(AuditRecord).where(AuditRecord.action == "hcp.update")).one()
    assert rec.changes == {"specialty": {"before": "Cardiology", "after": "Oncology"}}


def test_patch_requires_version(api, world, factory):
    hcp = factory.hcp(world["north"])
    resp = api(world["admin"]).patch(f"/api/v1/hcps/{hcp.id}", json={"city": "X"})
    assert resp.status_code == 422 and "version" in resp.get_json()["errors"]
    resp = api(world["admin"]).patch(f"/api/v1/hcps/{hcp.id}", json={"version": "1", "city": "X"})
    assert resp.status_code == 422


def test_stale_version_is_409_and_the_first_change_is_kept(api, world, factory):
    hcp = factory.hcp(world["north"], city="Springfield")
    admin, rep = api(world["admin"]), api(world["rep"])
    seen_by_admin = admin.get(f"/api/v1/hcps/{hcp.id}").get_json()["version"]
    seen_by_rep = rep.get(f"/api/v1/hcps/{hcp.id}").get_json()["version"]
    first = admin.patch(f"/api/v1/hcps/{hcp.id}", json={"version": seen_by_admin, "city": "Shelbyville"})
    assert first.status_code == 200
    second = rep.patch(f"/api/v1/hcps/{hcp.id}", json={"version": seen_by_rep, "city": "Capital City",
                                                        "specialty": "Dermatology"})
    assert second.status_code == 409
    problem = second.get_json()
    assert "someone else changed" in problem["detail"].lower()
    assert problem["current_version"] == 2
    now = admin.get(f"/api/v1/hcps/{hcp.id}").get_json()
    assert now["city"] == "Shelbyville" and now["specialty"] == "General Practice" and now["version"] == 2


def test_rep_updates_in_own_territory_only(api, world, factory):
    mine, theirs = factory.hcp(world["north"]), factory.hcp(world["south"])
    rep = api(world["rep"])
    assert rep.patch(f"/api/v1/hcps/{mine.id}", json={"version": 1, "specialty": "Oncology"}).status_code == 200
    resp = rep.patch(f"/api/v1/hcps/{theirs.id}", json={"version": 1, "specialty": "Oncology"})
    assert resp.status_code == 403 and resp.get_json()["rule"] == "hcp.update:territory"
    # but the rep can read it (sharing by default)
    assert rep.get(f"/api/v1/hcps/{theirs.id}").status_code == 200


def test_rep_cannot_move_an_hcp_to_a_territory_they_do_not_cover(api, world, factory, db):
    hcp = factory.hcp(world["north"])
    resp = api(world["rep"]).patch(f"/api/v1/hcps/{hcp.id}", json={"version": 1, "territory": "SOUTH"})
    assert resp.status_code == 403 and resp.get_json()["rule"] == "hcp.update:territory"
    db.refresh(hcp)
    assert hcp.territory_id == world["north"].id


@pytest.mark.parametrize("role", ["marketer", "call_centre", "medical", "compliance"])
def test_other_roles_cannot_update(api, world, factory, role):
    hcp = factory.hcp(world["north"])
    resp = api(world[role]).patch(f"/api/v1/hcps/{hcp.id}", json={"version": 1, "city": "X"})
    assert resp.status_code == 403 and resp.get_json()["rule"] == "hcp.update:role"


def test_territory_move_writes_history(api, world, factory, db):
    admin = api(world["admin"])
    out = admin.post("/api/v1/hcps", json=body(world["north"])).get_json()
    moved = admin.patch(f"/api/v1/hcps/{out['id']}", json={"version": out["version"], "territory": "SOUTH"})
    assert moved.status_code == 200 and moved.get_json()["territory"]["code"] == "SOUTH"
    rows = db.scalars(select(HCPTerritoryAssignment).where(HCPTerritoryAssignment.hcp_id == out["id"])
                      .order_by(HCPTerritoryAssignment.id)).all()
    assert [r.territory_id for r in rows] == [world["north"].id, world["south"].id]
    assert rows[0].valid_to is not None and rows[1].valid_to is None
    assert rows[0].valid_to == rows[1].valid_from
    rec = db.scalars(select(AuditRecord).where(AuditRecord.action == "hcp.update")).one()
    assert rec.changes["territory"] == {"before": "NORTH", "after": "SOUTH"}
    # the rep of North lost write access, the rep of South gained it; contact data follows
    assert api(world["rep"]).get(f"/api/v1/hcps/{out['id']}").get_json()["contact_data"]["visible"] is False
    south = api(world["rep_south"])
    assert south.get(f"/api/v1/hcps/{out['id']}").get_json()["contact_data"]["visible"] is True


def test_update_email_and_identifiers(api, world, factory, db):
    other = factory.hcp(world["north"], email="taken@x.org")
    db.add(HCPIdentifier(hcp_id=other.id, kind="npi", value=make_npi(5)))
    hcp = factory.hcp(world["north"], email="old@x.org")
    db.add(HCPIdentifier(hcp_id=hcp.id, kind="licence:IL", value="036-1234"))
    db.flush()
    admin = api(world["admin"])
    url = f"/api/v1/hcps/{hcp.id}"
    assert admin.patch(url, json={"version": 1, "email": "TAKEN@x.org"}).status_code == 409
    assert admin.patch(url, json={"version": 1, "identifiers": {"npi": make_npi(5)}}).status_code == 409
    assert admin.patch(url, json={"version": 1, "identifiers": {"npi": "1234567890"}}).status_code == 422
    resp = admin.patch(url, json={"version": 1, "email": "new@x.org",
                                  "identifiers": {"npi": make_npi(6), "licence:IL": None}})
    assert resp.status_code == 200
    out = resp.get_json()
    assert out["email"] == "new@x.org" and out["identifiers"] == {"npi": make_npi(6)}
    assert out["version"] == 2
    found = admin.get("/api/v1/hcps?q=new@x.org").get_json()["items"]
    assert [h["id"] for h in found] == [hcp.id]
    rec = db.scalars(select(AuditRecord).where(AuditRecord.action == "hcp.update")).one()
    assert rec.changes["email"] == {"before": "[personal data withheld]", "after": "[personal data withheld]"}
    assert "new@x.org" not in json.dumps(rec.changes) and "old@x.org" not in json.dumps(rec.changes)
    assert rec.changes["identifiers"]["after"] == {"npi": "[personal data withheld]"}  # identifiers too


def test_identifier_change_alone_moves_the_version(api, world, factory):
    hcp = factory.hcp(world["north"])
    out = api(world["admin"]).patch(f"/api/v1/hcps/{hcp.id}",
                                    json={"version": 1, "identifiers": {"npi": make_npi(77)}}).get_json()
    assert out["version"] == 2


def test_patch_without_changes_writes_nothing(api, world, factory, db):
    hcp = factory.hcp(world["north"], city="Springfield")
    out = api(world["admin"]).patch(f"/api/v1/hcps/{hcp.id}", json={"version": 1, "city": "Springfield"})
    assert out.status_code == 200 and out.get_json()["version"] == 1
    assert db.scalar(select(AuditRecord).where(AuditRecord.action == "hcp.update")) is None


def test_required_fields_cannot_be_cleared(api, world, factory):
    hcp = factory.hcp(world["north"])
    resp = api(world["admin"]).patch(f"/api/v1/hcps/{hcp.id}", json={"version": 1, "first_name": None})
    assert resp.status_code == 422
    resp = api(world["admin"]).patch(f"/api/v1/hcps/{hcp.id}", json={"version": 1, "status": "merged"})
    assert resp.status_code == 422


# -- HCOs ------------------------------------------------------------------------------------------

def test_hcos_list_and_detail_with_affiliated_hcps(api, world, factory, db):
    a, b = factory.hcp(world["north"]), factory.hcp(world["south"])
    clinic = HCO(name="Zeta Clinic", kind="practice", territory_id=world["north"].id)
    hospital = HCO(name="Alpha Hospital", kind="hospital")
    db.add_all([clinic, hospital])
    db.flush()
    db.add_all([Affiliation(hcp_id=a.id, hco_id=clinic.id), Affiliation(hcp_id=b.id, hco_id=clinic.id),
                Affiliation(hcp_id=a.id, hco_id=hospital.id, valid_from=days_ago(100), valid_to=days_ago(1))])
    db.flush()
    c = api(world["marketer"])
    listed = c.get("/api/v1/hcos").get_json()
    assert [h["name"] for h in listed["items"]] == ["Alpha Hospital", "Zeta Clinic"]
    detail = c.get(f"/api/v1/hcos/{clinic.id}").get_json()
    assert detail["hcp_ids"] == sorted([a.id, b.id]) and detail["territory"]["code"] == "NORTH"
    assert c.get(f"/api/v1/hcos/{hospital.id}").get_json()["hcp_ids"] == []
    assert [h["name"] for h in c.get("/api/v1/hcos?q=clin").get_json()["items"]] == ["Zeta Clinic"]
    assert [h["name"] for h in c.get("/api/v1/hcos?kind=hospital").get_json()["items"]] == ["Alpha Hospital"]
    assert c.get("/api/v1/hcos?territory=NOWHERE").status_code == 422
    assert c.get("/api/v1/hcos/999999").status_code == 404
    first = c.get("/api/v1/hcos?limit=1").get_json()
    second = c.get(f"/api/v1/hcos?limit=1&cursor={first['next_cursor']}").get_json()
    assert [first["items"][0]["name"], second["items"][0]["name"]] == ["Alpha Hospital", "Zeta Clinic"]
    assert second["next_cursor"] is None


def test_endpoints_require_a_token_and_are_documented(client, api, world):
    assert client.get("/api/v1/hcps/1").status_code == 401
    assert client.post("/api/v1/hcps", json={}).status_code == 401
    assert client.get("/api/v1/hcos").status_code == 401
    spec = api(world["admin"]).get("/api/v1/openapi.json").get_json()
    assert {"get", "post"} <= set(spec["paths"]["/api/v1/hcps"])
    assert {"get", "patch"} <= set(spec["paths"]["/api/v1/hcps/{hcp_id}"])
    assert "/api/v1/hcos/{hco_id}" in spec["paths"]
    assert "409" in spec["paths"]["/api/v1/hcps/{hcp_id}"]["patch"]["responses"]


def test_create_and_update_send_hcp_changed(api, world):
    from crm import signals

    seen = []

    def listener(sender, actor, changed):
        seen.append((sender.id, actor.id, changed))

    with signals.hcp_changed.connected_to(listener):
        admin = api(world["admin"])
        out = admin.post("/api/v1/hcps", json=body(world["north"])).get_json()
        admin.patch(f"/api/v1/hcps/{out['id']}", json={"version": 1, "city": "Boston"})
        admin.patch(f"/api/v1/hcps/{out['id']}", json={"version": 2, "city": "Boston"})  # no change: no signal
    assert [(s[0], s[1]) for s in seen] == [(out["id"], world["admin"].id)] * 2
    assert {"last_name", "email", "identifiers"} <= seen[0][2] and seen[1][2] == {"city"}


def test_a_bounced_address_is_shown_as_invalid_on_the_api_and_the_page(api, client, auth, factory, db):
    from crm.db import utcnow
    from crm.hcps.services import mark_emails_invalid

    territory = factory.territory()
    hcp = factory.hcp(territory=territory)
    marketer = factory.user("marketer")
    body = api(marketer).get(f"/api/v1/hcps/{hcp.id}").get_json()
    assert body["email_status"]["status"] == "valid"
    assert mark_emails_invalid(db, None, {hcp.id: ("550 5.1.1 mailbox unavailable", utcnow())}) == 1
    body = api(marketer).get(f"/api/v1/hcps/{hcp.id}").get_json()
    assert body["email_status"]["status"] == "invalid"
    assert body["email_status"]["since"].endswith("Z")
    auth.login(marketer)
    assert "invalid since" in client.get(f"/hcps/{hcp.id}").get_data(as_text=True)
