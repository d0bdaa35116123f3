"""The top navigation per role: each role sees its own work first. Endpoints that are not
registered (a feature not installed) are left out rather than breaking the page."""

from __future__ import annotations

from flask import current_app
from flask_login import current_user

# role -> [(endpoint, label)], in the order shown
NAV: dict[str, list[tuple[str, str]]] = {
    "field_rep": [("home.index", "My day"), ("hcps_pages.search", "HCPs"), ("timeline_pages.feed", "Feed")],
    "marketer": [("home.index", "Home"), ("timeline_pages.feed", "Feed"), ("hcps_pages.search", "HCPs")],
    "call_centre": [("home.index", "Home"), ("hcps_pages.search", "HCPs"), ("timeline_pages.feed", "Feed")],
    "medical": [("home.index", "Home"), ("hcps_pages.search", "HCPs"), ("timeline_pages.feed", "Feed")],
    "compliance": [("home.index", "Home"), ("audit_pages.trail", "Audit trail"),
                   ("audit_pages.sensitive_reads", "Sensitive reads"), ("hcps_pages.search", "HCPs"),
                   ("timeline_pages.feed", "Feed")],
    "admin": [("home.index", "Home"), ("hcps_pages.search", "HCPs"), ("timeline_pages.feed", "Feed"),
              ("audit_pages.trail", "Audit trail")],
}


def nav_links() -> list[tuple[str, str]]:
    if not current_user.is_authenticated:
        return []
    known = current_app.view_functions
    return [(ep, label) for ep, label in NAV.get(current_user.role, []) if ep in known]
