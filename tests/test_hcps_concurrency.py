"""The same HCP edited by two users at once: one change wins, the other gets 409, nothing is lost."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import select, text
from sqlalchemy.orm.exc import StaleDataError

from crm.access.policy import Viewer
from crm.audit.models import AuditRecord
from crm.auth.services import create_user, issue_token
from crm.extensions import db as _db
from crm.hcps.models import HCP, Territory
from crm.hcps.services import update_hcp
from tests.conftest import PASSWORD


def test_a_write_between_the_version_check_and_the_flush_is_caught(db, factory):
    """The versioned UPDATE is the second line of defence when two writers pass the check together."""
    hcp = factory.hcp(factory.territory(), city="Springfield")
    admin = Viewer(user_id=0, role="admin")
    # another transaction's committed write, invisible to the in-memory object
    db.execute(text("UPDATE hcps SET version = version + 1, city = 'Elsewhere' WHERE id = :i"), {"i": hcp.id})
    with pytest.raises(StaleDataError):
        update_hcp(db, None, admin, hcp, {"city": "Shelbyville"}, expected_version=1)
    db.expire_all()
    assert db.get(HCP, hcp.id).city == "Elsewhere"


@pytest.mark.committing
def test_two_users_patch_the_same_version_at_once(committing_app):
    with committing_app.app_context():
        t = Territory(code="C1", name="Concurrency")
        _db.session.add(t)
        _db.session.flush()
        hcp = HCP(first_name="Ada", last_name="Lovelace", profession="gp", territory_id=t.id, city="Springfield")
        _db.session.add(hcp)
        users = [create_user(_db.session, None, email=f"editor{i}@pharma.example", name=f"Editor {i}",
                             role="admin", password=PASSWORD) for i in range(2)]
        _db.session.flush()
        tokens = [issue_token(_db.session, u.email, PASSWORD, "127.0.0.1")[0] for u in users]
        hcp_id = hcp.id
        _db.session.commit()
        _db.session.remove()

    client = committing_app.test_client()
    barrier = threading.Barrier(2)
    results: dict[str, int] = {}
    errors: list[BaseException] = []

    def edit(token: str, city: str) -> None:
        try:
            barrier.wait()
            resp = client.patch(f"/api/v1/hcps/{hcp_id}", json={"version": 1, "city": city},
                                headers={"Authorization": f"Bearer {token}"})
            results[city] = resp.status_code
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=edit, args=(tok, city)) for tok, city in zip(tokens, ("North", "South"),
                                                                                    strict=True)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    assert sorted(results.values()) == [200, 409], results
    winner = next(city for city, status in results.items() if status == 200)

    with committing_app.app_context():
        stored = _db.session.get(HCP, hcp_id)
        assert stored.city == winner and stored.version == 2
        updates = _db.session.scalars(select(AuditRecord).where(AuditRecord.action == "hcp.update")).all()
        assert len(updates) == 1 and set(updates[0].changes) == {"city"}  # one change recorded (value withheld)
        _db.session.remove()
