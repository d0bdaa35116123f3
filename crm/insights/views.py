"""The glossary page: the lexicon (``crm.glossary``), the KPI definitions and the touch table
(``crm.insights.kpis``), generated from the code that the product itself counts with."""

from __future__ import annotations

from flask import Blueprint, render_template

from crm.auth.context import page_auth
from crm.glossary import TERMS
from crm.insights.kpis import KPIS, TOUCHES

bp = Blueprint("insights_pages", __name__)


@bp.get("/glossary")
@page_auth()
def glossary():
    return render_template("insights/glossary.html", terms=TERMS, kpis=KPIS, touches=TOUCHES)
