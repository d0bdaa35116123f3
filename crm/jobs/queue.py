"""The queue: huey, chosen by ``CRM_QUEUE_URL``, carrying job ids and outbox ids to the consumers.

- ``sqlite:///path`` (default ``instance/queue.db``): SqliteHuey, embedded, for one machine.
- ``redis://host:port/db``: RedisHuey, consumers on several machines.
- ``postgresql://user@host/db``: PostgresHuey (huey's own tables in that database).
- ``memory://``: one process only (unit tests).

One huey instance per app (``get_huey``), with the tasks registered on it (``_register``):

- ``run_job(job_id)``: runs a ``jobs`` row (crm/jobs/services.py); retried by huey with exponential backoff
  while the row says so;
- ``deliver_mail(ids)`` and ``deliver_order(outbox_id)``: hand outbox rows over (their own tables keep the
  attempts and the backoff);
- periodic (a consumer started without ``--no-periodic``): every minute the sweep (mail due, ERP orders and
  statuses, jobs whose consumer died); every night consent expiry and ``crm audit verify``, as jobs.

The web process only enqueues, and only after its transaction committed (``crm.db.on_commit``): a consumer
never sees an id whose row is not there yet. A message lost on the way (the queue down at that instant, a
consumer killed mid-task) is recovered from the tables by the sweep, never from the queue.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from flask import Flask, current_app
from huey import Huey, MemoryHuey, PostgresHuey, RedisHuey, SqliteHuey, crontab

log = logging.getLogger("crm.jobs")


def build_huey(url: str, *, immediate: bool = False) -> Huey:
    """The huey instance for ``url`` (see the module's list), its tasks not registered yet."""
    scheme, _, rest = url.partition("://")
    scheme = scheme.lower()
    huey: Huey
    if scheme == "sqlite":
        path = Path(rest[1:] if rest.startswith("/") else rest)
        path.parent.mkdir(parents=True, exist_ok=True)
        huey = SqliteHuey("crm", filename=str(path), immediate=immediate, timeout=30)
    elif scheme in ("redis", "rediss"):
        huey = RedisHuey("crm", url=url, immediate=immediate)
    elif scheme in ("postgresql", "postgresql+psycopg"):
        huey = PostgresHuey("crm", dsn=f"postgresql://{rest}", immediate=immediate)
    elif scheme == "memory":
        huey = MemoryHuey("crm", immediate=immediate)
    else:
        raise ValueError(f"unsupported CRM_QUEUE_URL scheme {scheme!r}")
    return huey


def get_huey(app: Flask | None = None) -> Huey:
    """The app's huey, built once from its configuration with every task registered."""
    app = app or current_app._get_current_object()  # type: ignore[attr-defined]
    huey: Huey | None = app.extensions.get("crm_huey")
    if huey is None:
        huey = build_huey(app.config["CRM_QUEUE_URL"], immediate=bool(app.config.get("CRM_QUEUE_IMMEDIATE")))
        app.extensions["crm_huey_tasks"] = _register(huey, app)
        app.extensions["crm_huey"] = huey
    return huey


def tasks(app: Flask | None = None) -> dict[str, Any]:
    app = app or current_app._get_current_object()  # type: ignore[attr-defined]
    get_huey(app)
    out: dict[str, Any] = app.extensions["crm_huey_tasks"]
    return out


def _register(huey: Huey, app: Flask) -> dict[str, Any]:
    """The tasks, bound to ``app`` (each pushes its own app context: consumers run tasks in threads)."""
    from crm.jobs import services

    attempts = int(app.config.get("CRM_JOB_MAX_ATTEMPTS", 5))
    base = float(app.config.get("CRM_JOB_RETRY_BASE_SECONDS", 30))

    # huey retries a job whose attempt raised (run_job re-raises only while the row has attempts left),
    # waiting base, 2 x base, 4 x base ... seconds.
    @huey.task(retries=attempts, retry_delay=base, retry_backoff=2, name="crm.run_job")
    def run_job(job_id: int) -> str:
        return services.run_job(app, job_id)

    @huey.task(name="crm.deliver_mail")
    def deliver_mail(ids: list[int] | None) -> None:
        from crm.mail.services import deliver_pending

        with app.app_context():
            deliver_pending(app, ids=ids, trigger="queue")

    @huey.task(name="crm.deliver_order")
    def deliver_order(outbox_id: int, trigger: str) -> None:
        from crm.orders.outbox import deliver_quietly

        with app.app_context():
            deliver_quietly(app, outbox_id, trigger)

    @huey.task(name="crm.sweep")
    def sweep() -> None:
        with huey.lock_task("crm-sweep"):
            services.sweep(app)

    registered: dict[str, Any] = {"run_job": run_job, "deliver_mail": deliver_mail,
                                  "deliver_order": deliver_order, "sweep": sweep}
    if app.config.get("CRM_QUEUE_PERIODIC", True):
        @huey.periodic_task(crontab(minute="*"), name="crm.sweep_every_minute")
        def sweep_every_minute() -> None:
            with huey.lock_task("crm-sweep"):
                services.sweep(app)

        @huey.periodic_task(crontab(minute="10", hour="2"), name="crm.nightly")
        def nightly() -> None:
            with huey.lock_task("crm-nightly"):
                services.nightly(app)

        registered.update(sweep_every_minute=sweep_every_minute, nightly=nightly)
    return registered


def _quietly(app: Flask, what: str, fn: Any, *args: Any) -> None:
    """Enqueue; a queue that cannot be reached is logged, not raised: the rows are committed, and the sweep
    (or ``crm mail send`` / ``crm erp sync``) takes them up."""
    try:
        fn(*args)
    except Exception:
        log.exception("could not put %s on the queue; the sweep will take it up", what)


def enqueue_job(app: Flask, job_id: int, *, delay: float | None = None) -> None:
    task = tasks(app)["run_job"]
    if delay:
        _quietly(app, f"job {job_id}", lambda: task.schedule(args=(job_id,), delay=delay))
    else:
        _quietly(app, f"job {job_id}", task, job_id)


def enqueue_mail(app: Flask, ids: Sequence[int] | None) -> None:
    _quietly(app, "mail delivery", tasks(app)["deliver_mail"], None if ids is None else list(ids))


def enqueue_order(app: Flask, outbox_id: int, trigger: str) -> None:
    _quietly(app, f"order outbox {outbox_id}", tasks(app)["deliver_order"], outbox_id, trigger)


def enqueue_sweep(app: Flask) -> None:
    _quietly(app, "sweep", tasks(app)["sweep"])
