"""The request boundary: size limit, security headers, one commit per request, health check."""

from __future__ import annotations

from flask import Blueprint, Flask, Response, current_app, jsonify, request
from sqlalchemy import text
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.middleware.proxy_fix import ProxyFix

from crm.extensions import db

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


def register_lifecycle(app: Flask) -> None:
    hops = int(app.config.get("CRM_TRUSTED_PROXIES") or 0)
    if hops:
        # Believe X-Forwarded-For/-Proto only as far as the configured proxies set them, so remote_addr is
        # the client's. Host and port are not taken from headers: links use CRM_PUBLIC_URL, and a client
        # could pass X-Forwarded-Host through a proxy that does not overwrite it.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)  # type: ignore[method-assign]

    @app.before_request
    def _limit_body() -> None:
        # Refuse by the declared length before anything reads the body; Werkzeug also caps streams.
        limit = current_app.config["MAX_CONTENT_LENGTH"]
        if request.content_length is not None and request.content_length > limit:
            raise RequestEntityTooLarge()

    @app.after_request
    def _commit(response: Response) -> Response:
        session = db.session
        keep = session.info.pop("keep_on_error", False)
        if response.status_code < 400 or keep:
            session.commit()  # after-commit hooks (mail, ERP) run here, only once the data is safe
        else:
            session.rollback()
        return response

    @app.after_request
    def _headers(response: Response) -> Response:
        h = response.headers
        h.setdefault("Content-Security-Policy", CSP)
        h.setdefault("X-Content-Type-Options", "nosniff")
        h.setdefault("X-Frame-Options", "DENY")
        h.setdefault("Referrer-Policy", "same-origin")
        h.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
        if current_app.config.get("CRM_ENV") == "production":
            h.setdefault("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
        # Pages, API answers and downloads carry contact data, consent evidence or a session's view of them:
        # no browser or proxy keeps a copy. Only static assets (CSS, JS, images) may be cached.
        if request.endpoint != "static":
            h.setdefault("Cache-Control", "no-store")
        return response


health_bp = Blueprint("health", __name__)


@health_bp.get("/healthz")
def healthz():
    try:
        db.session.execute(text("SELECT 1"))
    except Exception:
        current_app.logger.exception("health check: database unreachable")
        db.session.rollback()
        resp = jsonify({"status": "error", "database": "unreachable"})
        resp.status_code = 503
        return resp
    return jsonify({"status": "ok", "database": "ok"})
