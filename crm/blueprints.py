"""Every blueprint, in one list. ``True`` marks JSON API blueprints (bearer auth, CSRF-exempt)."""

from __future__ import annotations

from flask import Blueprint


def all_blueprints() -> list[tuple[Blueprint, bool]]:
    from crm.auth.api import bp as auth_api
    from crm.auth.views import bp as auth_views
    from crm.home.views import bp as home_views
    from crm.openapi import bp as openapi_bp
    from crm.web import health_bp

    return [
        (health_bp, False),
        (openapi_bp, True),
        (auth_api, True),
        (auth_views, False),
        (home_views, False),
    ]
