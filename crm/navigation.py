"""The top navigation per role: each role sees its own work first. Endpoints that are not
registered (a feature not installed) are left out rather than breaking the page."""

from __future__ import annotations

from typing import Any

from flask import current_app, url_for
from flask_login import current_user

# role -> [(endpoint, label)], in the order shown
NAV: dict[str, list[tuple[str, str]]] = {
    "field_rep": [("home.index", "My day"), ("hcps_pages.search", "HCPs"), ("visits_pages.mine", "My visits"),
                  ("timeline_pages.feed", "Feed")],
    "marketer": [("home.index", "Home"), ("timeline_pages.feed", "Feed"), ("hcps_pages.search", "HCPs")],
    "call_centre": [("home.index", "Home"), ("hcps_pages.search", "HCPs"), ("timeline_pages.feed", "Feed")],
    "medical": [("home.index", "Home"), ("hcps_pages.search", "HCPs"), ("visits_pages.mine", "My visits"),
                ("timeline_pages.feed", "Feed")],
    "compliance": [("home.index", "Home"), ("audit_pages.trail", "Audit trail"),
                   ("audit_pages.sensitive_reads", "Sensitive reads"), ("hcps_pages.search", "HCPs"),
                   ("timeline_pages.feed", "Feed")],
    "admin": [("home.index", "Home"), ("hcps_pages.search", "HCPs"), ("timeline_pages.feed", "Feed"),
              ("audit_pages.trail", "Audit trail")],
}

# Consent pages (issue 3): reps' re-consent list, compliance's lists, coverage for the home office.
NAV["field_rep"].append(("consent_pages.expiring", "Re-consent"))
NAV["marketer"].append(("consent_pages.coverage", "Consent coverage"))
NAV["compliance"].extend([("consent_pages.gaps", "Consent gaps"), ("consent_pages.expiring", "Expiring consents"),
                          ("consent_pages.coverage", "Consent coverage")])
NAV["admin"].append(("consent_pages.coverage", "Consent coverage"))

# Master data (issue 7): imports, duplicates and merge for the data steward; exports for compliance too.
NAV["admin"].append(("masterdata_pages.index", "Master data"))
NAV["compliance"].append(("masterdata_pages.export_form", "Data export"))


# Orders (issue 6): a rep's orders; the admin's ERP outbox.
NAV["field_rep"].append(("orders_pages.orders", "Orders"))
NAV["admin"].append(("orders_pages.outbox", "ERP outbox"))
NAV["admin"].append(("jobs_pages.index", "Jobs"))

# Email campaigns (issue 4): marketers run them; compliance approves templates; admins see unmatched events.
NAV["marketer"].append(("campaigns_pages.index", "Campaigns"))
NAV["compliance"].append(("campaigns_pages.templates", "Email templates"))
NAV["admin"].append(("campaigns_pages.index", "Campaigns"))


def nav_links() -> list[tuple[str, str]]:
    if not current_user.is_authenticated:
        return []
    known = current_app.view_functions
    return [(ep, label) for ep, label in NAV.get(current_user.role, []) if ep in known]


def url_if_known(endpoint: str, **values: Any) -> str | None:
    """``url_for`` for an endpoint of another feature, or None when that feature is not installed,
    so a page links where it can and shows plain text where it cannot."""
    if endpoint not in current_app.view_functions:
        return None
    return url_for(endpoint, **values)

# Events and the call centre (issue 5): events for the organisers, the agent's page, the two queues, the
# transparency report and the guardrail lists for compliance.
NAV["marketer"].append(("events_pages.index", "Events"))
NAV["medical"].extend([("events_pages.index", "Events"), ("callcentre_pages.inquiries", "Medical inquiries"),
                       ("callcentre_pages.cases", "Adverse events")])
NAV["call_centre"].extend([("callcentre_pages.agent", "Log a contact"), ("callcentre_pages.cases", "Adverse events"),
                           ("callcentre_pages.inquiries", "Medical inquiries")])
NAV["compliance"].extend([("callcentre_pages.cases", "Adverse events"), ("events_pages.transfers_report",
                                                                         "Transfers of value"),
                          ("guardrails_pages.rules", "Guardrails")])
NAV["admin"].append(("events_pages.transfers_report", "Transfers of value"))

# Surveys (issue 12): marketing writes and sends them; everyone reads the results.
NAV["marketer"].append(("surveys_pages.index", "Surveys"))
NAV["compliance"].append(("surveys_pages.index", "Surveys"))
NAV["admin"].append(("surveys_pages.index", "Surveys"))
# Segments, engagement plans and the glossary (issue 12): the home office plans; reps follow their plan;
# everyone reads the results and the lexicon.
NAV["marketer"].extend([("plans_pages.index", "Plans"), ("segments_pages.index", "Segments")])
NAV["field_rep"].append(("plans_pages.index", "Plans"))
for _role in ("call_centre", "medical", "compliance", "admin"):
    NAV[_role].append(("plans_pages.index", "Plans"))
# Sample accountability (issue 14): reps' samples; the admin ships; compliance reviews discrepancies.
NAV["field_rep"].append(("samples_pages.index", "Samples"))
NAV["admin"].append(("samples_pages.index", "Samples"))
NAV["compliance"].append(("samples_pages.discrepancies", "Sample discrepancies"))
# Planned visits (issue 14 item 5): the calendar for those who plan visits, the team week for oversight.
NAV["field_rep"].insert(1, ("visit_plans_pages.week", "Calendar"))
NAV["medical"].append(("visit_plans_pages.week", "Calendar"))
NAV["admin"].append(("visit_plans_pages.team", "Team calendar"))
NAV["compliance"].append(("visit_plans_pages.team", "Team calendar"))
# Insights and the glossary close every menu (issue 12): one insights page, the same figures for every role.
for _role in NAV:
    NAV[_role].extend([("insights_pages.index", "Insights"), ("insights_pages.glossary", "Glossary")])
