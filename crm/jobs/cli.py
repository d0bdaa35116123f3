"""``crm queue consume`` (a queue consumer: runs jobs, mail and ERP hand-overs, the periodic work),
``crm queue status`` (jobs per state, the failed ones with their error), ``crm queue sweep`` (the periodic
sweep once, in this process)."""

from __future__ import annotations

import logging

import click
from flask import current_app
from flask.cli import AppGroup

from crm.extensions import db

queue_cli = AppGroup("queue", help="The job queue (huey, CRM_QUEUE_URL).")


@queue_cli.command("consume")
@click.option("-w", "--workers", type=click.IntRange(1, 64), default=2, show_default=True,
              help="Worker threads: jobs and hand-overs run this many at a time.")
@click.option("--no-periodic", is_flag=True,
              help="Do not run the periodic work (sweep, nightly jobs): for every consumer but one.")
@click.option("--max-delay", type=click.FloatRange(0.05, 60), default=1.0, show_default=True,
              help="Longest pause between two looks at an empty queue, in seconds (SQLite and PostgreSQL).")
def consume(workers: int, no_periodic: bool, max_delay: float) -> None:
    """Run a queue consumer until Ctrl-C or SIGTERM (it finishes the tasks it is running). Start as many as
    you like, on any machine with the same CRM_QUEUE_URL and CRM_DATABASE_URL; give all but one --no-periodic.
    On start it puts back on the queue the jobs a killed consumer left behind."""
    from crm.jobs.queue import enqueue_sweep, get_huey
    from crm.logging import configure_logging

    app = current_app._get_current_object()  # type: ignore[attr-defined]
    configure_logging(app.config.get("CRM_LOG_LEVEL", "INFO"), app.config.get("CRM_LOG_FORMAT", "text"))
    huey = get_huey(app)
    periodic = not no_periodic and bool(app.config.get("CRM_QUEUE_PERIODIC", True))
    consumer = huey.create_consumer(workers=workers, worker_type="thread", periodic=periodic,
                                    max_delay=max_delay, initial_delay=min(0.1, max_delay))
    enqueue_sweep(app)  # jobs whose consumer died, mail and orders left due
    logging.getLogger("crm.jobs").info("queue consumer: %s worker(s), periodic %s, queue %s", workers,
                                       "on" if periodic else "off", app.config["CRM_QUEUE_URL"].split("://")[0])
    consumer.run()


@queue_cli.command("status")
def status() -> None:
    """Jobs per state; the failed ones (newest 50) with their error."""
    from sqlalchemy import select

    from crm.jobs.models import Job
    from crm.jobs.services import counts, label

    session = db.session
    found = counts(session)
    click.echo(", ".join(f"{state}: {found.get(state, 0)}" for state in ("queued", "running", "done", "failed")))
    for job in session.scalars(select(Job).where(Job.state == "failed").order_by(Job.id.desc()).limit(50)):
        click.echo(f"failed #{job.id} {label(job.kind)} after {job.attempts} attempt(s): {job.error}")


@queue_cli.command("sweep")
def sweep_command() -> None:
    """The periodic sweep once, here: recover interrupted jobs, hand over due mail and ERP orders."""
    from crm.jobs.services import sweep

    sweep(current_app._get_current_object())  # type: ignore[attr-defined]
    click.echo("sweep done")
