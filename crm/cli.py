"""``flask --app wsgi crm ...``: one group, a sub-group or command per domain."""

from __future__ import annotations

from flask.cli import AppGroup

crm_cli = AppGroup("crm", help="Pharma CRM administration commands.")


def _register() -> None:
    from crm.auth.cli import territories_cli, users_cli

    crm_cli.add_command(territories_cli)
    crm_cli.add_command(users_cli)


_register()
