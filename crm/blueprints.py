"""Every blueprint, in one list. ``True`` marks JSON API blueprints (bearer auth, CSRF-exempt)."""

from __future__ import annotations

from flask import Blueprint


def all_blueprints() -> list[tuple[Blueprint, bool]]:
    from crm.audit.api import bp as audit_api
    from crm.audit.views import bp as audit_pages
    from crm.auth.api import bp as auth_api
    from crm.auth.views import bp as auth_views
    from crm.callcentre.api import bp as callcentre_api
    from crm.callcentre.views import bp as callcentre_pages
    from crm.campaigns.api import bp as campaigns_api
    from crm.campaigns.views import bp as campaigns_pages
    from crm.consent.api import bp as consent_api
    from crm.consent.views import bp as consent_pages
    from crm.consent.views import public_bp as consent_public
    from crm.events.api import bp as events_api
    from crm.events.views import bp as events_pages
    from crm.guardrails.api import bp as guardrails_api
    from crm.guardrails.views import bp as guardrails_pages
    from crm.hcps.api import bp as hcps_api
    from crm.hcps.views import bp as hcps_pages
    from crm.home.views import bp as home_views
    from crm.insights.api import bp as insights_api
    from crm.insights.views import bp as insights_pages
    from crm.integrations.masterdata.views import bp as masterdata_pages
    from crm.integrations.sendgrid.api import bp as email_events_api
    from crm.jobs.api import bp as jobs_api
    from crm.jobs.views import bp as jobs_pages
    from crm.openapi import bp as openapi_bp
    from crm.orders.api import bp as orders_api
    from crm.orders.views import bp as orders_pages
    from crm.plans.api import bp as plans_api
    from crm.plans.views import bp as plans_pages
    from crm.products.api import bp as products_api
    from crm.samples.api import bp as samples_api
    from crm.samples.views import bp as samples_pages
    from crm.segments.api import bp as segments_api
    from crm.segments.views import bp as segments_pages
    from crm.speakers.api import bp as speakers_api
    from crm.speakers.views import bp as speakers_pages
    from crm.surveys.api import bp as surveys_api
    from crm.surveys.views import bp as surveys_pages
    from crm.surveys.views import public_bp as surveys_public
    from crm.timeline.api import bp as timeline_api
    from crm.timeline.views import bp as timeline_pages
    from crm.visit_plans.api import bp as visit_plans_api
    from crm.visit_plans.views import bp as visit_plans_pages
    from crm.visits.api import bp as visits_api
    from crm.visits.views import bp as visits_pages
    from crm.web import health_bp

    return [
        (health_bp, False),
        (openapi_bp, True),
        (auth_api, True),
        (auth_views, False),
        (home_views, False),
        (audit_api, True),
        (audit_pages, False),
        (hcps_api, True),
        (hcps_pages, False),
        (timeline_api, True),
        (timeline_pages, False),
        (visits_api, True),
        (visits_pages, False),
        (consent_api, True),
        (consent_pages, False),
        (consent_public, False),
        (masterdata_pages, False),
        (events_api, True),
        (callcentre_api, True),
        (guardrails_api, True),
        (events_pages, False),
        (callcentre_pages, False),
        (guardrails_pages, False),
        (products_api, True),
        (orders_api, True),
        (orders_pages, False),
        (campaigns_api, True),
        (campaigns_pages, False),
        (email_events_api, True),
        (surveys_api, True),
        (surveys_pages, False),
        (surveys_public, False),
        (segments_api, True),
        (segments_pages, False),
        (plans_api, True),
        (plans_pages, False),
        (insights_api, True),
        (insights_pages, False),
        (samples_api, True),
        (samples_pages, False),
        (speakers_api, True),
        (speakers_pages, False),
        (jobs_api, True),
        (jobs_pages, False),
        (visit_plans_api, True),
        (visit_plans_pages, False),
    ]
