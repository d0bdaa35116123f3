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


def test_the_samples_migration_makes_sample_only_products_sample_products():
    """Issue 11: products that cannot be ordered (sample-only, from the ERP) become sample products; the rest not."""
    app = make_app(database_url("_migrations"))
    _empty(app)
    with app.app_context():
        upgrade(revision="5c978c5c2a31")
        with db.engine.begin() as conn:
            conn.execute(text("INSERT INTO products (sku, name, unit, active, orderable, created_at, updated_at) "
                              "VALUES ('S-1', 'Sample pack', 'pack', :t, :f, :now, :now), "
                              "('P-1', 'Product', 'pack', :t, :t, :now, :now)"),
                         {"t": True, "f": False, "now": "2026-01-01 00:00:00+00:00"})
        upgrade(revision="b7e1d2a9c4f0")
        with db.engine.connect() as conn:
            rows = dict(conn.execute(text("SELECT sku, is_sample FROM products")).all())
            limits = set(conn.execute(text("SELECT max_sample_quantity FROM products")).scalars())
        assert {k: bool(v) for k, v in rows.items()} == {"S-1": True, "P-1": False} and limits == {10}
        downgrade(revision="base")
        db.engine.dispose()


def test_the_insights_migration_copies_each_items_channel_and_kind_to_its_participants():
    """Issue 12 item 4: participants carry their item's channel and kind; existing rows get them copied."""
    app = make_app(database_url("_migrations"))
    _empty(app)
    with app.app_context():
        upgrade(revision="52a5d0e73303")
        now = "2026-01-01 00:00:00+00:00"
        with db.engine.begin() as conn:
            conn.execute(text("INSERT INTO hcps (id, first_name, last_name, profession, country, status, email_status, "
                              "version, created_at, updated_at) VALUES (1, 'A', 'B', 'gp', 'US', 'active', 'valid', "
                              "1, :now, :now), (2, 'C', 'D', 'gp', 'US', 'active', 'valid', 1, :now, :now)"),
                         {"now": now})
            conn.execute(text("INSERT INTO interactions (id, occurred_at, recorded_at, channel, kind, source, summary, "
                              "safe_summary, details, sensitivity, owner_role, consent_gap) VALUES "
                              "(1, :now, :now, 'visit', 'visit.submitted', 'crm', '', '', :d, 'standard', :r, :f), "
                              "(2, :now, :now, 'email', 'email.opened', 'esp', '', '', :d, 'standard', :r, :f)"),
                         {"now": now, "f": False, "d": "{}", "r": "system"})
            conn.execute(text("INSERT INTO interaction_participants (interaction_id, hcp_id, occurred_at) VALUES "
                              "(1, 1, :now), (1, 2, :now), (2, 2, :now)"), {"now": now})
        upgrade()
        with db.engine.connect() as conn:
            rows = conn.execute(text("SELECT interaction_id, hcp_id, channel, kind FROM interaction_participants "
                                     "ORDER BY interaction_id, hcp_id")).all()
        assert [tuple(r) for r in rows] == [(1, 1, "visit", "visit.submitted"), (1, 2, "visit", "visit.submitted"),
                                            (2, 2, "email", "email.opened")]
        with db.engine.begin() as conn:
            for table in ("interaction_participants", "interactions", "hcps"):
                conn.execute(text(f"DELETE FROM {table}"))
        downgrade(revision="base")
        db.engine.dispose()
