"""``crm erp sync`` (send queued orders, pull statuses, pull the catalogue) and ``crm erp stub-server``."""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import AppGroup

from crm.orders import outbox

erp_cli = AppGroup("erp", help="The ERP integration.")


@erp_cli.command("sync")
@click.option("--every", type=float, default=None,
              help="Keep running: sync again every this many seconds (a worker; stop it with Ctrl-C).")
@click.option("--runs", type=int, default=None, help="With --every: stop after this many runs.")
def sync(every: float | None, runs: int | None) -> None:
    """Send queued orders, pull order statuses and the catalogue. Exit 1 when the ERP could not be
    reached for something (queued orders stay queued and are retried with backoff)."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    if every is not None:
        if every <= 0:
            raise click.BadParameter("must be positive", param_hint="--every")
        outbox.run_forever(app, every, runs, say=click.echo)
        return
    report = outbox.run_sync(app)
    click.echo(outbox.describe(report))
    if not report.ok:
        raise SystemExit(1)


@erp_cli.command("stub-server")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8070, show_default=True)
@click.option("--database", default=None,
              help="SQLAlchemy URL of the stub ERP's own database (default: instance/erp_stub.sqlite3).")
def stub_server(host: str, port: int, database: str | None) -> None:
    """Serve the ERP simulator over the http adapter's signed protocol, for CRM_ERP_ADAPTER=http locally.

    It checks signatures with CRM_ERP_HTTP_SECRET, so point the CRM at it with
    CRM_ERP_HTTP_URL=http://HOST:PORT and the same secret.
    """
    from crm.config import _instance_dir
    from crm.integrations.erp.erp_server import ErpServer, simulator_on
    from crm.integrations.erp.stub import faults_from_config, simulator_settings

    config = current_app.config
    url = database or f"sqlite:///{_instance_dir() / 'erp_stub.sqlite3'}"
    simulator = simulator_on(url, simulator_settings(config), faults_from_config(config))
    server = ErpServer(simulator, config["CRM_ERP_HTTP_SECRET"], host=host, port=port)
    click.echo(f"ERP stub serving on {server.url} (database {url}); Ctrl-C stops it")
    try:
        server.httpd.serve_forever()
    except KeyboardInterrupt:
        click.echo("stopped")
    finally:
        server.httpd.server_close()
