"""The migrations upgrade an empty database to head, and agree with the models."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import downgrade, upgrade
from sqlalchemy import inspect, text

from crm.extensions import db
from tests.conftest import database_url, make_app


def _empty(app) -> None:
    with app.app_context(), db.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
        else:
            for table in inspect(conn).get_table_names():
                conn.execute(text(f'DROP TABLE IF EXISTS "{table}"'))


def test_upgrade_empty_database_to_head_and_models_agree():
    app = make_app(database_url("_migrations"))
    _empty(app)
    with app.app_context():
        upgrade()
        with db.engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            diff = compare_metadata(ctx, db.metadata)
        assert diff == [], f"models and migrations disagree: {diff}"
        tables = set(inspect(db.engine).get_table_names())
        assert {"hcps", "interactions", "interaction_participants", "visits", "audit_records"} <= tables
        # the consent ledger is append-only in a migrated database too, not only under create_all
        with db.engine.connect() as conn:
            if conn.dialect.name == "postgresql":
                triggers = set(conn.execute(text(
                    "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal "
                    "AND tgrelid = 'consent_events'::regclass")).scalars())
                assert {"consent_events_no_update_delete", "consent_events_no_truncate"} <= triggers
            else:
                triggers = set(conn.execute(text(
                    "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'consent_events'"
                )).scalars())
                assert {"consent_events_no_update", "consent_events_no_delete", "consent_events_no_replace"} <= triggers
        # and they go back down cleanly
        downgrade(revision="base")
        assert set(inspect(db.engine).get_table_names()) <= {"alembic_version"}
        db.engine.dispose()
