"""The guardrail lists as a page: compliance adds phrases and switches them on or off."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for

from crm.auth.context import actor, page_auth, viewer
from crm.extensions import db
from crm.guardrails import services
from crm.guardrails.models import CATEGORIES, CATEGORY_LABELS

bp = Blueprint("guardrails_pages", __name__)


@bp.get("/guardrails")
@page_auth("compliance")
def rules():
    rules_ = services.all_rules(db.session)
    by_category = {c: [r for r in rules_ if r.category == c] for c in CATEGORIES}
    sample = request.args.get("text", "")
    context = request.args.get("context", "visit")
    hits = services.check_text(db.session, sample, context if context in services.CONTEXTS else "visit") \
        if sample else []
    return render_template("guardrails/rules.html", by_category=by_category, labels=CATEGORY_LABELS,
                           sample=sample, context=context, hits=hits, contexts=services.CONTEXTS)


@bp.post("/guardrails")
@page_auth("compliance")
def add():
    rule = services.add_rule(db.session, actor(), viewer(), request.form.get("category", ""),
                             request.form.get("phrase", ""))
    flash(f"Added “{rule.phrase}” to {CATEGORY_LABELS[rule.category].lower()}.")
    return redirect(url_for(".rules") + f"#{rule.category}")


@bp.post("/guardrails/<int:rule_id>")
@page_auth("compliance")
def toggle(rule_id: int):
    rule = services.set_rule_active(db.session, actor(), viewer(), rule_id, request.form.get("active") == "1")
    flash(f"“{rule.phrase}” is now {'on' if rule.active else 'off'}.")
    return redirect(url_for(".rules") + f"#{rule.category}")
