"""Personal data never reaches the audit trail in clear (so erasure leaves none there), and pages that
show it are never kept by a browser or proxy cache."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from crm.audit.models import AuditRecord
from crm.audit.services import record, verify_chain
from crm.auth.services import viewer_for
from crm.hcps.erasure import erase_hcp
from crm.hcps.models import HCP
from crm.hcps.services import create_hcp, mark_emails_invalid, update_hcp
from tests.conftest import ROLES, utc

WITHHELD = "[personal data withheld]"
GRACE = {"first_name": "Gracewyn", "last_name": "Hopperstein", "profession": "specialist",
         "specialty": "Cardiology", "email": "gracewyn@navy-clinic.example", "phone": "+1 202 555 0199",
         "address_line": "17 Admiralty Row", "city": "Arlingmouth", "postal_code": "22209-4321",
         "state": "Virginiana", "tags": ["vip-kol-hopper"], "identifiers": {"npi": "1234567893"}}
SECRETS = ["Gracewyn", "Hopperstein", "gracewyn@navy-clinic.example", "+1 202 555 0199", "Admiralty",
           "Arlingmouth", "22209-4321", "Virginiana", "vip-kol-hopper", "1234567893",
           # the update below
           "Gracie", "1245319599", "Portsmouthon"]


def _trail(db) -> str:
    return json.dumps([r.changes for r in db.scalars(select(AuditRecord))], ensure_ascii=False)


def test_no_personal_field_of_an_hcp_is_audited_in_clear_and_erasure_leaves_nothing(db, factory):
    territory = factory.territory()
    admin = factory.user("admin")
    as_admin = viewer_for(db, admin)
    hcp = create_hcp(db, admin, as_admin, {**GRACE, "territory": territory.code})
    update_hcp(db, admin, as_admin, hcp, {"first_name": "Gracie", "identifiers": {"npi": "1245319599"},
                                          "city": "Portsmouthon", "specialty": "Cardiac surgery"}, hcp.version)
    mark_emails_invalid(db, None, {hcp.id: ("550 5.1.1 <gracewyn@navy-clinic.example>: no such user",
                                            utc(2026, 3, 1))})

    create, update, bounce = db.scalars(select(AuditRecord).where(
        AuditRecord.entity == "hcp", AuditRecord.entity_id == str(hcp.id)).order_by(AuditRecord.id)).all()
    # what changed is still accountable: the fields are named, the values withheld
    assert create.changes["last_name"] == {"before": None, "after": WITHHELD}
    assert create.changes["identifiers"] == {"before": None, "after": {"npi": WITHHELD}}
    assert create.changes["profession"] == {"before": None, "after": "specialist"}  # not personal: in clear
    assert update.changes["first_name"] == {"before": WITHHELD, "after": WITHHELD}
    assert update.changes["identifiers"] == {"before": {"npi": WITHHELD}, "after": {"npi": WITHHELD}}
    assert update.changes["specialty"] == {"before": "Cardiology", "after": "Cardiac surgery"}
    assert bounce.changes["email_status"] == {"before": "valid", "after": "invalid"}
    assert bounce.changes["reason"] == {"before": None, "after": WITHHELD}

    erase_hcp(db, admin, hcp, "Art. 17 request")
    trail = _trail(db)
    for secret in SECRETS:
        assert secret not in trail, secret
    db.expire_all()
    erased = db.get(HCP, hcp.id)
    assert erased.email_status_reason is None and erased.city is None and erased.tags is None
    assert verify_chain(db).ok  # nothing had to be rewritten, so the chain still holds


def test_personal_keys_are_withheld_however_a_service_builds_the_changes(db):
    """The importer adds ``identifiers`` by hand, outside ``audit.diff``: the record still withholds them."""
    rec = record(db, None, "hcp.update", "hcp", 7, {
        "identifiers": {"added": ["npi=1234567893", "licence:CA=A12345"]},
        "state": {"before": "CA", "after": "NY"}, "specialty": {"before": None, "after": "Oncology"},
        "email": {"before": None, "after": "someone@clinic.example"}})
    assert rec.changes == {"identifiers": {"added": WITHHELD}, "state": {"before": WITHHELD, "after": WITHHELD},
                           "specialty": {"before": None, "after": "Oncology"},
                           "email": {"before": None, "after": WITHHELD}}
    # an order outbox's state is not an address: other entities keep their own words in clear
    other = record(db, None, "order_outbox.retry", "order_outbox", 7,
                   {"state": {"before": "failed", "after": "queued"}})
    assert other.changes == {"state": {"before": "failed", "after": "queued"}}
    assert verify_chain(db).ok


@pytest.mark.parametrize("role", ROLES)
def test_pages_with_contact_data_are_not_cached_for_any_role(client, auth, factory, role):
    territory = factory.territory()
    hcp = factory.hcp(territory)
    auth.login(factory.user(role, [territory]))
    for path in ("/", f"/hcps/{hcp.id}", "/hcps"):
        resp = client.get(path)
        assert resp.status_code == 200, (path, resp.status_code)
        assert resp.mimetype == "text/html"
        assert resp.headers["Cache-Control"] == "no-store", path


def test_no_store_on_public_pages_and_api_but_static_assets_stay_cacheable(client, api, factory):
    assert client.get("/login").headers["Cache-Control"] == "no-store"
    assert api(factory.user("admin")).get("/api/v1/hcps").headers["Cache-Control"] == "no-store"
    with client.get("/static/crm.css") as css:
        assert css.status_code == 200 and "no-store" not in css.headers.get("Cache-Control", "")
