"""``crm mail send`` (hand over what is due), ``crm mail retry`` (arm failed mails again), ``crm mail status``."""

from __future__ import annotations

import time

import click
from flask import current_app
from flask.cli import AppGroup

from crm.extensions import db

mail_cli = AppGroup("mail", help="The mail outbox.")


def _describe(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {outcome}" for outcome, n in sorted(counts.items())) or "nothing due"


@mail_cli.command("send")
@click.option("--every", type=float, default=None,
              help="Keep running: hand over what is due every this many seconds (a worker; Ctrl-C stops it).")
@click.option("--runs", type=int, default=None, help="With --every: stop after this many runs.")
def send_command(every: float | None, runs: int | None) -> None:
    """Hand every due mail to the email adapter. Exit 1 when some could not be handed over (they are
    retried with backoff, or are failed after the last attempt: see `crm mail retry`)."""
    from crm.mail.services import deliver_pending

    app = current_app._get_current_object()  # type: ignore[attr-defined]
    if every is not None and every <= 0:
        raise click.BadParameter("must be positive", param_hint="--every")
    done = 0
    while True:
        counts = deliver_pending(app, trigger="cli")
        click.echo(f"mail: {_describe(counts)}")
        done += 1
        if every is None:
            if counts["retry"] or counts["failed"]:
                raise SystemExit(1)
            return
        if runs is not None and done >= runs:
            return
        time.sleep(every)


@mail_cli.command("retry")
@click.option("--id", "outbox_ids", type=int, multiple=True, help="Only this outbox id (repeatable).")
def retry_command(outbox_ids: tuple[int, ...]) -> None:
    """Arm failed mails again (all of them, or --id ...) and hand them over now."""
    from crm.errors import DomainError
    from crm.mail.services import deliver_pending, retry

    app = current_app._get_current_object()  # type: ignore[attr-defined]
    session = db.session
    try:
        rows = retry(session, None, list(outbox_ids) or None)
    except DomainError as exc:  # refused before anything was written
        raise click.ClickException(exc.detail) from exc
    ids = [r.id for r in rows]
    session.commit()
    click.echo(f"armed again: {len(ids)}")
    if ids:
        counts = deliver_pending(app, ids=ids, trigger="retry")
        click.echo(f"mail: {_describe(counts)}")


@mail_cli.command("status")
def status_command() -> None:
    """How many mails are queued, sending, sent and failed; the failed ones with their last error."""
    from sqlalchemy import select

    from crm.mail.models import MailOutbox
    from crm.mail.services import summary

    session = db.session
    counts = summary(session)
    click.echo(", ".join(f"{state}: {counts.get(state, 0)}" for state in ("queued", "sending", "sent", "failed")))
    for row in session.scalars(select(MailOutbox).where(MailOutbox.state == "failed").order_by(MailOutbox.id)
                               .limit(50)):
        click.echo(f"failed #{row.id} {row.kind} {row.message_id} after {row.attempts} attempt(s): {row.last_error}")
