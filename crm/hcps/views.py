"""The HCP search page: a field rep starts in their own territories, everyone else with everyone."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, render_template, url_for
from sqlalchemy import select

from crm.auth.context import page_auth, viewer
from crm.extensions import db
from crm.hcps import services
from crm.hcps.models import HCP, Territory
from crm.hcps.professions import PROFESSIONS
from crm.hcps.schemas import HCPSearchPageArgs
from crm.navigation import url_if_known
from crm.schemas import load_args

bp = Blueprint("hcps_pages", __name__)

_FILTERS = ("q", "profession", "specialty", "territory")


def hcp_url(hcp_id: int) -> str:
    """The HCP page (the timeline feature's), by endpoint when it is installed."""
    return url_if_known("timeline_pages.hcp", hcp_id=hcp_id) or f"/hcps/{hcp_id}"


@bp.get("/hcps")
@page_auth()
def search():
    args = load_args(HCPSearchPageArgs())
    who = viewer()
    scope = args.get("scope") or ("mine" if who.role == "field_rep" else "all")
    hcps, next_cursor = services.search_hcps(
        db.session, who, q=args.get("q"), territory_code=args.get("territory"),
        profession=args.get("profession"), specialty=args.get("specialty"), mine=scope == "mine",
        limit=args["limit"], cursor=args["cursor"],
    )
    filters: dict[str, Any] = {k: args[k] for k in _FILTERS if args.get(k)}
    return render_template(
        "hcps/search.html",
        rows=services.hcp_public_dicts(db.session, who, hcps),
        filters=filters,
        scope=scope,
        offer_scopes=who.role == "field_rep" or bool(who.territory_ids),
        scope_url=lambda s: url_for(".search", scope=s, **filters),
        next_url=url_for(".search", scope=scope, cursor=next_cursor, **filters) if next_cursor else None,
        first_url=url_for(".search", scope=scope, **filters) if args["cursor"] else None,
        professions=PROFESSIONS,
        specialties=_specialties(),
        territories=db.session.scalars(select(Territory).order_by(Territory.code)).all(),
        hcp_url=hcp_url,
    )


def _specialties() -> list[str]:
    rows = db.session.scalars(
        select(HCP.specialty).where(HCP.specialty.is_not(None)).distinct().order_by(HCP.specialty).limit(300)
    )
    return [s for s in rows if s]
