"""The HCP picker: search-as-you-type wherever a page asks for an HCP, so nobody types an id.

The page's form has a search field and a select (``templates/_picker.html``); without JavaScript the
"Find" button sends the form back and the select lists the matches; with it, crm/static/picker.js asks
``GET /hcps/pick`` as the user types. Both go through ``choices``: the HCP search of ``search_hcps`` with
the same rule as the write the form leads to. A field rep's picker for a visit or an order lists only
HCPs of the rep's territories (WRITE_RULES limits those writes to them), so a picker never offers an HCP
the form would then refuse. Only names, profession, specialty, city and territory are returned: every
role may read those (SPEC section 4); contact data never leaves through a picker.
"""

from __future__ import annotations

import re
from typing import Any

from flask import request
from sqlalchemy import select

from crm.access.policy import WRITE_RULES, Viewer
from crm.db import DbSession
from crm.hcps.models import HCP
from crm.hcps.services import search_hcps
from crm.labels import label
from crm.pageforms import page_id

MAX_RESULTS = 20
MAX_CHOSEN = 200
MAX_QUERY = 200


def territorial(viewer: Viewer, action: str | None) -> bool:
    """Is ``viewer`` limited to own territories for ``action`` (so the picker keeps to them)?"""
    if action not in WRITE_RULES:
        return False
    return viewer.role in WRITE_RULES[action][1]


def choice(hcp: HCP) -> dict[str, Any]:
    """What a picker shows of one HCP: id, name and a line that tells namesakes apart."""
    parts = [hcp.specialty or label(hcp.profession, "profession"), hcp.city,
             hcp.territory.code if hcp.territory is not None else None]
    return {"id": hcp.id, "name": hcp.full_name, "detail": " · ".join(p for p in parts if p)}


def search(session: DbSession, viewer: Viewer, q: str, action: str | None = None,
           limit: int = MAX_RESULTS) -> list[HCP]:
    """HCPs matching ``q`` (name words, an identifier or an email, as the HCP search), within the
    viewer's territories when ``action`` limits them; merged HCPs are left out. No query, no results."""
    term = (q or "").strip()[:MAX_QUERY]
    if not term:
        return []
    hcps, _ = search_hcps(session, viewer, q=term, mine=territorial(viewer, action), limit=limit)
    return hcps


def ids_of(selected: Any) -> list[int]:
    """Ids from a list or a ``1, 2 3`` string; anything that is not an id in range is dropped."""
    raw = list(selected) if isinstance(selected, list | tuple) else re.split(r"[,\s]+", str(selected or ""))
    out: list[int] = []
    for value in raw:
        number = page_id(str(value))
        if number is not None and number not in out:
            out.append(number)
    return out[:MAX_CHOSEN]


def choices(session: DbSession, viewer: Viewer, key: str, selected: Any = None,
            action: str | None = None, query: str | None = None) -> dict[str, Any]:
    """For the template: the HCPs already chosen (by id), the query typed in ``<key>_q`` (else ``query``,
    a search to start from) and its matches."""
    chosen_ids = ids_of(selected)
    chosen: list[dict[str, Any]] = []
    if chosen_ids:
        found = {h.id: h for h in session.scalars(select(HCP).where(HCP.id.in_(chosen_ids)))}
        chosen = [choice(found[i]) for i in chosen_ids if i in found]
    q = (request.values.get(f"{key}_q", "").strip() or (query or "").strip())[:MAX_QUERY]
    matches = [choice(h) for h in search(session, viewer, q, action) if h.id not in chosen_ids]
    return {"chosen": chosen, "found": matches, "q": q, "searched": bool(q)}


def finding() -> bool:
    """Did the user press a picker's "Find" (no JavaScript)? The view then shows the form again."""
    return bool(request.form.get("picker_find"))
