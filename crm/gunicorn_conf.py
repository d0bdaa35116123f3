"""gunicorn settings used by `make run`. The app is created in each worker (no preload), and the
SQLAlchemy engine is also disposed after any fork (crm.db), so workers never share a connection."""

import os

bind = os.environ.get("CRM_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("CRM_WORKERS", "3"))
timeout = 60
graceful_timeout = 20
accesslog = "-"
errorlog = "-"
# A TLS-terminating proxy in front sets X-Forwarded-*; trust only loopback by default.
forwarded_allow_ips = os.environ.get("CRM_FORWARDED_ALLOW_IPS", "127.0.0.1")


def post_fork(server, worker):  # noqa: ARG001 - gunicorn's hook signature
    # Belt and braces with crm.db's os.register_at_fork: no pooled connection crosses a fork.
    from crm.db import _dispose_after_fork

    _dispose_after_fork()
