"""Pharma CRM: the application factory, a table of contents of the app.

Importing the package imports nothing else: a process that needs one plain module (the NPPES
reader process, see crm/integrations/masterdata/reading.py) does not pay for Flask and the app.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flask import Flask


def create_app(config: dict[str, Any] | None = None) -> Flask:
    from flask import Flask

    app = Flask(__name__, instance_relative_config=False)
    register_config(app, config)
    register_extensions(app)
    register_request_lifecycle(app)
    register_templates(app)
    register_blueprints(app)
    register_errors(app)
    register_cli(app)
    return app


def register_config(app: Flask, overrides: dict[str, Any] | None) -> None:
    from crm.config import Settings

    settings = Settings.from_env()
    app.config.update(settings.flask_config())
    if overrides:
        app.config.update(overrides)


def register_extensions(app: Flask) -> None:
    from crm import models  # noqa: F401  (every model registered on the metadata)
    from crm.auth.context import register_login
    from crm.campaigns import listeners as _campaign_listeners  # noqa: F401  (signal receivers)
    from crm.consent import listeners as _consent_listeners  # noqa: F401  (signal receivers)
    from crm.db import harden_engine
    from crm.extensions import csrf, db, migrate
    from crm.guardrails import listeners as _guardrail_listeners  # noqa: F401  (signal receivers)
    from crm.integrations.email import listeners as _email_listeners  # noqa: F401  (signal receivers)

    db.init_app(app)
    with app.app_context():
        harden_engine(db.engine)
    migrate.init_app(app, db, directory=str(_migrations_dir()))
    csrf.init_app(app)
    register_login(app)


def register_request_lifecycle(app: Flask) -> None:
    from crm.web import register_lifecycle

    register_lifecycle(app)


def register_templates(app: Flask) -> None:
    from crm.icons import register_icons
    from crm.labels import register_labels
    from crm.navigation import nav_links, url_if_known
    from crm.timezones import register_timezones

    app.jinja_env.globals["nav_links"] = nav_links
    app.jinja_env.globals["url_if_known"] = url_if_known
    register_labels(app)
    register_timezones(app)
    register_icons(app)


def register_blueprints(app: Flask) -> None:
    from crm.blueprints import all_blueprints
    from crm.extensions import csrf

    for bp, is_api in all_blueprints():
        if is_api:
            csrf.exempt(bp)  # bearer tokens, no cookies: CSRF does not apply
        app.register_blueprint(bp)


def register_errors(app: Flask) -> None:
    from crm.errors import register_error_handlers

    register_error_handlers(app)


def register_cli(app: Flask) -> None:
    from crm.cli import crm_cli

    app.cli.add_command(crm_cli)


def _migrations_dir() -> Any:
    from crm.config import PROJECT_ROOT

    return PROJECT_ROOT / "migrations"
