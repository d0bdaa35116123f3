"""``crm territories create``, ``crm users create`` and ``crm users set-password``: the same services as the API."""

from __future__ import annotations

import click
from flask.cli import AppGroup

from crm.auth import services
from crm.errors import Invalid
from crm.extensions import db
from crm.hcps.services import create_territory

territories_cli = AppGroup("territories", help="Territories.")
users_cli = AppGroup("users", help="Users.")


@territories_cli.command("create")
@click.argument("code")
@click.argument("name")
def territories_create(code: str, name: str) -> None:
    """Create territory CODE named NAME (an existing code: no change, exit 0)."""
    territory, created = create_territory(db.session, None, code, name)
    db.session.commit()
    click.echo(f"{'created' if created else 'exists'}: territory {territory.code} ({territory.name})")


@users_cli.command("create")
@click.option("--email", required=True)
@click.option("--name", required=True)
@click.option("--role", required=True, type=click.Choice(
    ["field_rep", "marketer", "call_centre", "medical", "compliance", "admin"]))
@click.option("--territory", "territories", multiple=True, help="Territory code; repeat for several.")
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True)
def users_create(email: str, name: str, role: str, territories: tuple[str, ...], password: str) -> None:
    """Create a user (the password is prompted when not given)."""
    try:
        user = services.create_user(db.session, None, email=email, name=name, role=role, password=password,
                                    territory_codes=list(territories))
    except Invalid as exc:
        db.session.rollback()
        for field, messages in exc.errors.items():
            click.echo(f"error: {field}: {'; '.join(messages)}", err=True)
        raise SystemExit(1) from exc
    db.session.commit()
    click.echo(f"created: user {user.id} {email} ({role})")


@users_cli.command("set-password")
@click.option("--email", required=True)
@click.option("--password", prompt="New password", hide_input=True, confirmation_prompt=True)
def users_set_password(email: str, password: str) -> None:
    """Reset a user's password (prompted when not given); their tokens and sessions end."""
    user = services.find_user_by_email(db.session, email)
    if user is None:
        click.echo(f"error: email: no user with the email {email}", err=True)
        raise SystemExit(1)
    try:
        services.set_password(db.session, None, user, password)
    except Invalid as exc:
        db.session.rollback()
        for field, messages in exc.errors.items():
            click.echo(f"error: {field}: {'; '.join(messages)}", err=True)
        raise SystemExit(1) from exc
    db.session.commit()
    click.echo(f"password set: user {user.id} {email}; their tokens and sessions have ended")
