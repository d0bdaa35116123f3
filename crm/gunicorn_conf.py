"""gunicorn settings used by `make run`. The app is created in each worker (no preload), and the
SQLAlchemy engine is also disposed after any fork (crm.db), so workers never share a connection."""

import os

from crm.config import log_settings
from crm.logging import gunicorn_logconfig

bind = os.environ.get("CRM_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("CRM_WORKERS", "3"))
timeout = 60
graceful_timeout = 20
# The app writes one log line per request itself (logger crm.request: method, path without the query,
# status, duration, request id); gunicorn's access log would repeat it without the request id.
accesslog = None
errorlog = "-"
# gunicorn's own messages in the app's format (CRM_LOG_FORMAT) at the app's level (CRM_LOG_LEVEL).
_log = log_settings(dict(os.environ))
loglevel = _log["CRM_LOG_LEVEL"].lower()
logconfig_dict = gunicorn_logconfig(_log["CRM_LOG_LEVEL"], _log["CRM_LOG_FORMAT"])
# A TLS-terminating proxy in front sets X-Forwarded-*; trust only loopback by default.
forwarded_allow_ips = os.environ.get("CRM_FORWARDED_ALLOW_IPS", "127.0.0.1")


def post_fork(server, worker):  # noqa: ARG001 - gunicorn's hook signature
    # Belt and braces with crm.db's os.register_at_fork: no pooled connection crosses a fork.
    from crm.db import _dispose_after_fork

    _dispose_after_fork()
