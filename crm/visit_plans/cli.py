"""``crm visit-plans week EMAIL [--week 2026-W50]``: one person's planned week, from the command line (the same
query as the calendar page)."""

from __future__ import annotations

import click
from flask.cli import AppGroup

from crm.extensions import db

visit_plans_cli = AppGroup("visit-plans", help="Planned visits (the field calendar).")


@visit_plans_cli.command("week")
@click.argument("email")
@click.option("--week", "week", default="", help="An ISO week (2026-W50) or a day of it; default this week.")
def week_command(email: str, week: str) -> None:
    """EMAIL's planned visits Monday to Sunday: start, end, status, HCP (times in UTC)."""
    from crm.auth.services import find_user_by_email, viewer_for
    from crm.db import utcnow
    from crm.visit_plans import services
    from crm.visit_plans.schemas import parse_week

    user = find_user_by_email(db.session, email)
    if user is None:
        raise click.ClickException(f"no user with email {email}")
    try:
        monday = parse_week(week or utcnow().astimezone(services.plan_zone()).date().isoformat())
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    since, until = services.week_bounds(monday)
    rows, more = services.list_plans(db.session, viewer_for(db.session, user), since=since, until=until,
                                     owner_id=user.id, limit=200)
    iso = monday.isocalendar()
    click.echo(f"{user.name}: week {iso.week} of {iso.year}, {len(rows)} planned visit(s)")
    for plan in rows:
        click.echo(f"{plan.planned_start:%a %Y-%m-%d %H:%M}-{plan.planned_end:%H:%M}\t{plan.status}\t"
                   f"{plan.hcp.full_name} (HCP {plan.hcp_id})")
    if more:
        click.echo("(more than 200: only the first 200 are listed)")
