"""Side effects wait for the real commit: a released SAVEPOINT is not a commit, a rollback drops them."""

from crm.db import on_commit
from crm.hcps.models import Territory


def test_hooks_wait_for_the_root_commit_not_a_savepoint(db):
    ran = []
    on_commit(db, lambda: ran.append("outer"))
    with db.begin_nested():
        db.add(Territory(code="SP1", name="x"))
        on_commit(db, lambda: ran.append("inner"))
    assert ran == [], "releasing a savepoint must not run after-commit hooks"
    db.commit()
    assert ran == ["outer", "inner"]


def test_a_hook_registered_in_a_rolled_back_savepoint_is_dropped(db):
    ran = []
    on_commit(db, lambda: ran.append("kept"))
    nested = db.begin_nested()
    on_commit(db, lambda: ran.append("dropped"))
    nested.rollback()
    db.commit()
    assert ran == ["kept"]


def test_a_root_rollback_drops_every_hook(db):
    ran = []
    on_commit(db, lambda: ran.append("x"))
    db.rollback()
    db.commit()
    assert ran == []
