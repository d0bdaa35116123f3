"""``crm plans list`` and ``crm plans attainment ID``: the plans and their plan vs actual, from the command line
(the same computation as the page and the API)."""

from __future__ import annotations

import json

import click
from flask.cli import AppGroup

from crm.extensions import db

plans_cli = AppGroup("plans", help="Engagement plans and their attainment.")


@plans_cli.command("list")
def list_command() -> None:
    """Every engagement plan: id, cycle, name."""
    from sqlalchemy import select

    from crm.plans.models import EngagementPlan

    for plan in db.session.scalars(select(EngagementPlan).order_by(EngagementPlan.id)):
        click.echo(f"{plan.id}\t{plan.cycle_start.isoformat()}..{plan.cycle_end.isoformat()}\t{plan.name}")


@plans_cli.command("attainment")
@click.argument("plan_id", type=click.IntRange(1, 2**31 - 1))
@click.option("--territory", "territories", multiple=True, help="Only HCPs in this territory (code; repeatable).")
@click.option("--json", "as_json", is_flag=True, help="The full result as JSON (as the API answers).")
def attainment_command(plan_id: int, territories: tuple[str, ...], as_json: bool) -> None:
    """Plan vs actual of plan PLAN_ID now: per channel, then totals (definitions: /glossary)."""
    from sqlalchemy import select

    from crm.errors import DomainError
    from crm.hcps.models import Territory
    from crm.plans.attainment import attainment
    from crm.plans.schemas import AttainmentOut
    from crm.plans.services import get_plan

    session = db.session
    try:
        plan = get_plan(session, plan_id)
    except DomainError as exc:
        raise click.ClickException(exc.detail) from exc
    territory_ids = None
    if territories:
        found = dict(session.execute(select(Territory.code, Territory.id).where(Territory.code.in_(territories))).all())
        unknown = sorted(set(territories) - set(found))
        if unknown:
            raise click.ClickException(f"unknown territory code(s): {', '.join(unknown)}")
        territory_ids = list(found.values())
    result = attainment(session, plan, territory_ids=territory_ids, hcp_limit=5000 if as_json else 0)
    if as_json:
        click.echo(json.dumps(AttainmentOut().dump(result)))
        return
    click.echo(f"{plan.name} ({plan.cycle_start.isoformat()} to {plan.cycle_end.isoformat()}, "
               f"{result['elapsed_pct']} % gone by, {result['totals']['hcps']} HCPs)")
    click.echo(f"{'channel':<14}{'planned':>9}{'touches':>9}{'attain%':>9}{'reach':>7}{'freq':>7}")
    for row in [*result["channels"], {**result["totals"], "label": "All channels"}]:
        pct = "-" if row["attainment_pct"] is None else f"{row['attainment_pct']:.1f}"
        click.echo(f"{row['label']:<14}{row['planned']:>9}{row['touches']:>9}{pct:>9}{row['reach']:>7}"
                   f"{row['frequency']:>7}")
    click.echo(f"behind plan: {result['totals']['behind']} HCPs")
