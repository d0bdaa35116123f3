"""The HCP search page: a field rep starts in their own territories, everyone else with everyone."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify, render_template, url_for
from sqlalchemy import select

from crm.auth.context import page_auth, viewer
from crm.extensions import db
from crm.hcps import picker, services
from crm.hcps.models import HCP, Territory
from crm.hcps.professions import PROFESSIONS
from crm.hcps.schemas import HCPPickArgs, HCPPickSchema, HCPSearchPageArgs
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


@bp.get("/hcps/pick")
@page_auth()
def pick():
    """The picker's search as the user types (crm/static/picker.js): JSON for a signed-in page user.

    The same search and scope as the no-JavaScript fallback (``picker.search``): a field rep's picker for
    a visit or an order keeps to the rep's territories; only names and a telling-apart line come back.
    """
    args = load_args(HCPPickArgs())
    hcps = picker.search(db.session, viewer(), args["q"], args["for_"])
    response = jsonify(HCPPickSchema().dump({"items": [picker.choice(h) for h in hcps]}))
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.app_template_global("hcp_picker_choices")
def hcp_picker_choices(key: str, selected: Any = None, action: str | None = None,
                       query: str | None = None) -> dict[str, Any]:
    """For ``templates/_picker.html``: the chosen HCPs and the matches of what was typed (no JavaScript)."""
    return picker.choices(db.session, viewer(), key, selected, action, query)
