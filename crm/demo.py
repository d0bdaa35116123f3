"""``crm demo``: a realistic, idempotent demo data set, built through the real services.

Three territories, one user per role (printed logins), 300 HCPs with valid NPIs, a few HCOs with
affiliations, and two years of field visits (some group visits, some with samples and a signature,
some medical). Running it again adds nothing: every row is found by its natural key first.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import select

from crm.auth.services import create_user, find_user_by_email, viewer_for
from crm.db import DbSession
from crm.hcps.identifiers import make_npi
from crm.hcps.models import HCO, Affiliation, HCPIdentifier
from crm.hcps.services import create_territory
from crm.products.models import Product, SampleLot

TERRITORIES = [("NE-01", "North-East 1"), ("MW-02", "Mid-West 2"), ("WC-03", "West Coast 3")]
DEMO_PASSWORD_SUFFIX = "-demo-2026"  # noqa: S105 - published demo logins, refused in production

USERS = [
    # (role, email, name, territories)
    ("field_rep", "rep.north@demo.example", "Riley North", ["NE-01"]),
    ("field_rep", "rep.west@demo.example", "Wes Coast", ["WC-03", "MW-02"]),
    ("marketer", "marketer@demo.example", "Morgan Market", []),
    ("call_centre", "agent@demo.example", "Casey Call", []),
    ("medical", "msl@demo.example", "Dr. Mia Medic", []),
    ("compliance", "compliance@demo.example", "Cory Compliance", []),
    ("admin", "admin@demo.example", "Ada Admin", []),
]

PRODUCTS = [
    ("CARD-10", "Cardiozol 10 mg", True), ("CARD-20", "Cardiozol 20 mg", True),
    ("ONCO-100", "Oncorex 100 mg", True), ("NEURO-5", "Neurolin 5 mg", True),
    ("CARD-S", "Cardiozol starter sample", False),
]
# The products reps hand out as samples (sku, units per visit at most), and their lots by expiry relative
# to the day the demo is loaded: one expired a year ago (it covers the older visits), one current, one new.
SAMPLE_PRODUCTS = [("CARD-S", 6)]
SAMPLE_LOT_EXPIRIES = [-365, 200, 700]

FIRST = ["Priya", "James", "Aisha", "Jennifer", "Carlos", "Mei", "Olu", "Sara", "David", "Fatima", "Liam",
         "Noah", "Emma", "Grace", "Hiro", "Ana", "Tomas", "Chloe", "Ravi", "Leah", "Omar", "Ines", "Yuki", "Zoe"]
LAST = ["Johnson", "O'Brien", "Nguyen", "Williams", "Garcia", "Chen", "Okafor", "Smith", "Kowalski", "Haddad",
        "Murphy", "Rossi", "Schmidt", "Patel", "Tanaka", "Silva", "Novak", "Dubois", "Iyer", "Cohen", "Ali"]
SPECIALTIES = [
    ("gp", "General Practice"), ("specialist", "Cardiology"), ("specialist", "Oncology"),
    ("specialist", "Psychiatry"), ("specialist", "Internal Medicine"), ("pharmacist", "Pharmacy"),
    ("nurse", "Nurse Practitioner"),
]
CITIES = {"NE-01": [("Boston", "MA", "02115"), ("Providence", "RI", "02903")],
          "MW-02": [("Chicago", "IL", "60611"), ("Madison", "WI", "53703")],
          "WC-03": [("Seattle", "WA", "98104"), ("Portland", "OR", "97205")]}
KEY_MESSAGES = ["Once-daily dosing", "New outcomes data", "Patient support programme", "Safety profile",
                "Reimbursement update"]


def _signature_png(width: int = 240, height: int = 80) -> str:
    """A signature as the visit page's pad draws it (a dark stroke on a transparent pad), as a PNG data URL."""
    import base64
    import math
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    rows = bytearray()
    for y in range(height):
        rows.append(0)
        for x in range(width):
            stroke = 20 <= x < 220 and abs(y - (40 + 18 * math.sin(x / 14) * math.cos(x / 37))) <= 1.5
            rows += bytes((25, 35, 110, 255) if stroke else (0, 0, 0, 0))
    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(bytes(rows), 9)) + chunk(b"IEND", b""))
    return "data:image/png;base64," + base64.b64encode(png).decode()


# The demo's stand-in for a signature drawn on the pad.
DEMO_SIGNATURE = _signature_png()
HCP_COUNT = 300


def demo_logins() -> list[tuple[str, str, str]]:
    return [(role, email, role + DEMO_PASSWORD_SUFFIX) for role, email, _n, _t in USERS]


def load_demo(session: DbSession, say: Callable[[str], None] = print, hcps: int = HCP_COUNT,
              now: datetime | None = None) -> dict[str, int]:
    """Load the demo data set; returns counts of what was created this time."""
    from crm.hcps.services import create_hcp
    from crm.plans.demo import demo_tier, load_plan_demo

    rnd = random.Random(20261122)  # noqa: S311 - reproducible demo data, not security
    now = now or datetime.now(UTC)
    counts = {"territories": 0, "users": 0, "products": 0, "hcps": 0, "hcos": 0, "visits": 0}
    territories = {}
    for code, name in TERRITORIES:
        territories[code], created = create_territory(session, None, code, name)
        counts["territories"] += created
    for sku, name, orderable in PRODUCTS:
        if session.scalar(select(Product).where(Product.sku == sku)) is None:
            session.add(Product(sku=sku, name=name, orderable=orderable))
            counts["products"] += 1
    counts["sample_lots"] = _sample_lots(session, now)
    users = {}
    for role, email, name, codes in USERS:
        user = find_user_by_email(session, email)
        if user is None:
            user = create_user(session, None, email=email, name=name, role=role,
                               password=role + DEMO_PASSWORD_SUFFIX, territory_codes=codes)
            counts["users"] += 1
        users[email] = user
    session.flush()
    admin = users["admin@demo.example"]
    admin_viewer = viewer_for(session, admin)

    hcos = _hcos(session, territories, counts)
    codes = [c for c, _ in TERRITORIES]
    new_hcps = []
    for i in range(hcps):
        npi = make_npi(700_000 + i)
        if session.scalar(select(HCPIdentifier).where(HCPIdentifier.kind == "npi",
                                                      HCPIdentifier.value == npi)) is not None:
            continue
        code = codes[i % len(codes)]
        first, last = rnd.choice(FIRST), rnd.choice(LAST)
        profession, specialty = rnd.choice(SPECIALTIES)
        city, state, postal = rnd.choice(CITIES[code])
        hcp = create_hcp(session, admin, admin_viewer, {
            "first_name": first, "last_name": last, "profession": profession, "specialty": specialty,
            "email": f"{first}.{last}.{i}@{city.lower()}-health.example".lower().replace("'", ""),
            "phone": f"+1 555 {rnd.randint(100, 999)} {rnd.randint(1000, 9999)}",
            "address_line": f"{rnd.randint(1, 999)} {rnd.choice(['Main', 'Oak', 'Elm', 'Harbor'])} St",
            "city": city, "state": state, "postal_code": postal, "territory": code,
            "identifiers": {"npi": npi}, "tags": [rnd.choice(["kol", "high-potential", "new-prescriber"])],
            "tier": demo_tier(i),
        })
        hco = rnd.choice(hcos[code])
        session.add(Affiliation(hcp_id=hcp.id, hco_id=hco.id, role="attending"))
        new_hcps.append((hcp, code))
        counts["hcps"] += 1
    session.flush()
    if new_hcps:
        counts["sample_shipments"] = _sample_stock(session, users, now)
    counts["visits"] = _visits(session, users, new_hcps, rnd, now)
    if new_hcps:  # the other channels ride on the HCPs created in this run, so a re-run adds nothing
        counts["consent_events"] = _consents(session, users, new_hcps, rnd, now)
        counts["events"] = _events(session, users, new_hcps, rnd, now)
        counts["call_centre_contacts"] = _call_centre(session, users, new_hcps, rnd, now)
        counts["orders"] = _orders(session, users, new_hcps, rnd)
        counts["sample_discrepancies"] = _sample_accountability(session, users, now)
        counts["speakers"] = _speakers(session, users, new_hcps, now)
        from crm.campaigns.demo import load_campaign_demo

        campaign_counts = load_campaign_demo(session, users, [h for h, _code in new_hcps], now)
        counts["campaigns"] = campaign_counts["campaigns"]
        counts["email_events"] = campaign_counts["email_events"]
        from crm.surveys.demo import load_survey_demo

        counts.update(load_survey_demo(session, users, [h for h, _code in new_hcps], now))
    counts.update(load_plan_demo(session, users, now))
    from crm.visit_plans.demo import load_visit_plan_demo

    counts.update(load_visit_plan_demo(session, users, now))
    return counts


def _sample_lots(session: DbSession, now: datetime) -> int:
    """Mark the demo's sample products (once, when they are not yet) and give each its lots."""
    from crm.products.services import add_sample_lot, set_sample_settings

    made = 0
    for sku, per_visit in SAMPLE_PRODUCTS:
        product = session.scalar(select(Product).where(Product.sku == sku))
        if product is None:
            continue
        if not session.scalar(select(SampleLot.id).where(SampleLot.product_id == product.id).limit(1)):
            set_sample_settings(session, None, None, product, is_sample=True, max_sample_quantity=per_visit)
            for days in SAMPLE_LOT_EXPIRIES:
                expires_on = (now + timedelta(days=days)).date()
                add_sample_lot(session, None, None, product, f"{sku[:4]}-{expires_on:%y%m}", expires_on)
                made += 1
    return made


DEMO_STOCK_PER_LOT = 2000


def _sample_stock(session: DbSession, users: dict[str, Any], now: datetime) -> int:
    """Each rep's opening stock: a shipment of every demo lot two years ago (before the oldest visit, while
    every lot was good), acknowledged on arrival, so the visits' samples come out of a real inventory."""
    from crm.samples.services import acknowledge, create_shipment

    admin = users["admin@demo.example"]
    lines = [{"sku": sku, "lot": lot, "quantity": DEMO_STOCK_PER_LOT} for sku, lot in session.execute(
        select(Product.sku, SampleLot.lot_number).join(SampleLot, SampleLot.product_id == Product.id)
        .order_by(SampleLot.expires_on))]
    if not lines:
        return 0
    made = 0
    sent_at = now - timedelta(days=740)
    for email in ("rep.north@demo.example", "rep.west@demo.example"):
        rep = users[email]
        shipment = create_shipment(session, admin, viewer_for(session, admin), to_user_id=rep.id, lines=lines,
                                   note="Opening stock", sent_at=sent_at)
        acknowledge(session, rep, viewer_for(session, rep), shipment, received_at=sent_at + timedelta(days=2))
        made += 1
    return made


def _sample_accountability(session: DbSession, users: dict[str, Any], now: datetime) -> int:
    """A shipment waiting for the north rep's acknowledgement, a transfer between the reps, and a count by
    the west rep that finds two units missing: an open discrepancy on compliance's start page."""
    from crm.samples.services import acknowledge, create_shipment, inventory, record_count, send_transfer

    admin, north, west = (users[e] for e in ("admin@demo.example", "rep.north@demo.example",
                                              "rep.west@demo.example"))
    current = [row for row in inventory(session, north.id, now.date()) if not row["expired"]]
    if not current:
        return 0
    newest = current[-1]
    create_shipment(session, admin, viewer_for(session, admin), to_user_id=north.id,
                    lines=[{"sku": newest["sku"], "lot": newest["lot"], "quantity": 120}], note="Quarterly top-up")
    transfer = send_transfer(session, north, viewer_for(session, north), to_user_id=west.id,
                             lines=[{"sku": newest["sku"], "lot": newest["lot"], "quantity": 20}],
                             note="West ran short before the congress")
    acknowledge(session, west, viewer_for(session, west), transfer)
    held = inventory(session, west.id, now.date())
    counted = [{"sku": r["sku"], "lot": r["lot"], "counted": r["quantity"] - (2 if i == len(held) - 1 else 0)}
               for i, r in enumerate(held)]
    count = record_count(session, west, viewer_for(session, west), counted, note="Quarterly count")
    return sum(1 for line in count.lines if line.counted != line.expected)


def _speakers(session: DbSession, users: dict[str, Any], new_hcps: list[tuple[Any, str]], now: datetime) -> int:
    """Two KOLs with their influence tier and expertise, qualified as speakers; one speaks at the webinar."""
    from decimal import Decimal

    from crm.events.models import Event
    from crm.speakers.services import add_qualification, add_speaker, set_kol_profile

    msl, marketer = users["msl@demo.example"], users["marketer@demo.example"]
    sv, mv = viewer_for(session, msl), viewer_for(session, marketer)
    kols = [h for h, _code in new_hcps[:2]]
    for hcp, (tier, areas) in zip(kols, [("national", ["Heart failure", "Hypertension"]),
                                         ("regional", ["Oncology", "Supportive care"])], strict=False):
        set_kol_profile(session, msl, sv, hcp, influence_tier=tier, expertise=areas)
        add_qualification(session, msl, sv, hcp, topics=areas, trained_on=(now - timedelta(days=90)).date(),
                          valid_until=(now + timedelta(days=640)).date(), note="Speaker training, spring cohort")
    webinar = session.scalar(select(Event).where(Event.external_id == "demo-webinar"))
    if webinar is None or len(kols) < 2:
        return 0
    add_speaker(session, marketer, mv, webinar, hcp_id=kols[1].id, topic="Oncology", fee_amount=Decimal("1500.00"),
                fee_currency="USD")
    return 1


def _lot_for(session: DbSession, sku: str, on: date) -> str | None:
    """The demo lot of ``sku`` a rep would hand out on ``on``: the first to expire that is still good."""
    return session.scalar(select(SampleLot.lot_number).join(Product, Product.id == SampleLot.product_id)
                          .where(Product.sku == sku, SampleLot.expires_on >= on)
                          .order_by(SampleLot.expires_on).limit(1))


def _hcos(session: DbSession, territories: dict[str, Any], counts: dict[str, int]) -> dict[str, list[HCO]]:
    out: dict[str, list[HCO]] = {}
    for code, territory in territories.items():
        out[code] = []
        for j, (kind, label) in enumerate([("hospital", "General Hospital"), ("practice", "Family Practice"),
                                           ("pharmacy", "Community Pharmacy")]):
            city = CITIES[code][j % 2][0]
            name = f"{city} {label}"
            hco = session.scalar(select(HCO).where(HCO.name == name))
            if hco is None:
                hco = HCO(name=name, kind=kind, city=city, state=CITIES[code][j % 2][1],
                          postal_code=CITIES[code][j % 2][2], territory_id=territory.id)
                session.add(hco)
                counts["hcos"] += 1
            out[code].append(hco)
    session.flush()
    return out


def _visits(session: DbSession, users: dict[str, Any], new_hcps: list[tuple[Any, str]], rnd: random.Random,
            now: datetime) -> int:
    """Two years of submitted visits for the HCPs created in this run (none on a re-run)."""
    from crm.visits.services import create_visit, submit_visit

    reps = [users["rep.north@demo.example"], users["rep.west@demo.example"]]
    msl = users["msl@demo.example"]
    viewers = {u.id: viewer_for(session, u) for u in [*reps, msl]}
    by_territory: dict[str, list[Any]] = {}
    for hcp, code in new_hcps:
        by_territory.setdefault(code, []).append(hcp)
    made = 0
    for hcp, code in new_hcps:
        rep = reps[0] if code == "NE-01" else reps[1]
        for _ in range(rnd.randint(2, 7)):
            when = now - timedelta(days=rnd.randint(1, 730), hours=rnd.randint(0, 8))
            when = when.replace(hour=rnd.randint(8, 17), minute=rnd.choice([0, 15, 30, 45]), second=0,
                                microsecond=0)
            medical = rnd.random() < 0.06
            actor = msl if medical else rep
            products = rnd.sample([p[0] for p in PRODUCTS[:4]], k=rnd.randint(1, 2))
            samples = ([{"sku": "CARD-S", "quantity": rnd.randint(1, 4), "lot": f"L{rnd.randint(1000, 9999)}"}]
                       if not medical and rnd.random() < 0.2 else [])
            for sample in samples:  # the lot in the rep's bag that day (the random draw keeps the sequence)
                sample["lot"] = _lot_for(session, str(sample["sku"]), when.date()) or sample["lot"]
            attendees = []
            if not medical and rnd.random() < 0.08:
                peers = [h.id for h in by_territory[code] if h.id != hcp.id]
                attendees = rnd.sample(peers, k=min(2, len(peers)))
            follow_up = None
            if rnd.random() < 0.15:
                follow_up = {"date": (now + timedelta(days=rnd.randint(-5, 20))).date(),
                             "text": "Send the new outcomes data"}
            data = {
                "hcp_id": hcp.id, "occurred_at": when, "mode": rnd.choice(["in_person"] * 4 + ["remote"]),
                "duration_minutes": rnd.choice([10, 15, 20, 30]), "products": products,
                "key_messages": rnd.sample(KEY_MESSAGES, k=2),
                "samples": samples, "notes": ("Discussed dosing questions; answered by MSL." if medical
                                              else "Interested in the patient support programme."),
                "follow_up": follow_up, "attendee_hcp_ids": attendees,
            }
            if data["mode"] == "remote":
                data["meeting_url"] = f"https://meet.example.com/demo-{hcp.id}-{made}"
            visit = create_visit(session, actor, viewers[actor.id], data)
            submit_visit(session, actor, viewers[actor.id], visit, signature=DEMO_SIGNATURE if samples else None)
            made += 1
    # a couple of drafts so the rep's home page has work on it
    for hcp, code in new_hcps[:2]:
        rep = reps[0] if code == "NE-01" else reps[1]
        create_visit(session, rep, viewers[rep.id], {
            "hcp_id": hcp.id, "occurred_at": now - timedelta(hours=2), "mode": "in_person",
            "products": ["CARD-10"], "key_messages": ["Once-daily dosing"], "samples": [], "notes": "Draft notes",
            "follow_up": {"date": date.today() + timedelta(days=3), "text": "Call back"}, "attendee_hcp_ids": [],
        })
    return made


def _consents(session: DbSession, users: dict[str, Any], new_hcps: list[tuple[Any, str]], rnd: random.Random,
              now: datetime) -> int:
    """An active notice; visit consents signed in visits; email consents from paper forms, most of them
    confirmed through the double opt-in link, a few still pending, a few withdrawn, some close to expiry."""
    from crm.consent.models import ConsentEvent, ConsentToken
    from crm.consent.services import (
        activate_notice,
        active_notice,
        confirm,
        create_notice,
        grant_consent,
        withdraw_consent,
    )

    admin = users["admin@demo.example"]
    notice = active_notice(session, "en")
    if notice is None:
        notice = create_notice(session, admin, language="en", title="How we contact you",
                               text="We would like to contact you about our medicines and services by the "
                                    "channels and for the purposes you choose. You can withdraw at any time, "
                                    "by one click in any email, one call to our contact centre or in a visit.")
        activate_notice(session, admin, notice)
    reps = {"NE-01": users["rep.north@demo.example"], "MW-02": users["rep.west@demo.example"],
            "WC-03": users["rep.west@demo.example"]}
    made = 0
    for i, (hcp, code) in enumerate(new_hcps):
        if rnd.random() < 0.75:
            when = now - timedelta(days=rnd.randint(30, 700))
            grant_consent(session, reps[code], hcp, "visit", "promotional", "visit", notice_version=notice.version,
                          evidence={"signature": DEMO_SIGNATURE}, occurred_at=when)
            made += 1
        if rnd.random() < 0.6:
            when = now - timedelta(days=rnd.randint(20, 715))
            for purpose in ("medical_information", "events"):
                grant_consent(session, admin, hcp, "email", purpose, "paper_form", notice_version=notice.version,
                              evidence={"form_id": f"PF-{2026 - when.year}-{hcp.id:05d}"}, occurred_at=when)
                made += 1
            requested, _ = grant_consent(session, admin, hcp, "email", "promotional", "paper_form",
                                         notice_version=notice.version,
                                         evidence={"form_id": f"PF-DOI-{hcp.id:05d}"}, occurred_at=when)
            made += 1
            if i % 12 != 0:  # most HCPs click the confirmation link; a few never do (pending)
                token = session.scalar(select(ConsentToken).where(ConsentToken.event_id == requested.id,
                                                                  ConsentToken.purpose == "confirm"))
                if isinstance(requested, ConsentEvent) and token is not None:
                    confirm(session, token, ip_address="198.51.100.7",
                            user_agent="Mozilla/5.0 (demo mail client)")
                    made += 1
            if i % 17 == 0:
                withdraw_consent(session, admin, hcp, "email", "promotional", "paper_form",
                                 evidence={"form_id": f"PF-OPTOUT-{hcp.id:05d}"})
                made += 1
    return made


def _events(session: DbSession, users: dict[str, Any], new_hcps: list[tuple[Any, str]], rnd: random.Random,
            now: datetime) -> int:
    """A past congress with invitations, attendance and transfers of value; an upcoming webinar; a medical
    round table organised by Medical Affairs."""
    from decimal import Decimal

    from crm.events.services import create_event, invite, record_attendance, record_transfer

    marketer, msl = users["marketer@demo.example"], users["msl@demo.example"]
    mv, sv = viewer_for(session, marketer), viewer_for(session, msl)
    start = (now - timedelta(days=40)).replace(hour=9, minute=0, second=0, microsecond=0)
    congress, _ = create_event(session, marketer, mv, {
        "name": "Cardiology Update 2026", "type": "congress", "starts_at": start,
        "ends_at": start + timedelta(hours=8), "venue": "Boston Convention Center", "products": ["CARD-10"],
        "organiser": "Marketing", "sensitivity": "standard", "country": "US", "external_id": "demo-congress-2026"})
    guests = [h for h, _code in new_hcps[:40]]
    if guests:
        invite(session, marketer, mv, congress, [h.id for h in guests])
    for n, hcp in enumerate(guests[:26]):
        record_attendance(session, marketer, mv, congress, hcp.id, "no_show" if n % 9 == 4 else "attended")
        if n % 9 != 4:
            record_transfer(session, marketer, mv, congress, hcp_id=hcp.id, kind="meal", amount=Decimal("48.50"),
                            currency="USD", paid_on=start.date())
            if n % 5 == 0:
                record_transfer(session, marketer, mv, congress, hcp_id=hcp.id, kind="travel",
                                amount=Decimal("312.00"), currency="USD", paid_on=start.date())
    webinar_start = (now + timedelta(days=14)).replace(hour=17, minute=0, second=0, microsecond=0)
    webinar, _ = create_event(session, marketer, mv, {
        "name": "Oncorex in practice (webinar)", "type": "webinar", "starts_at": webinar_start,
        "ends_at": webinar_start + timedelta(hours=1), "url": "https://events.example/oncorex",
        "products": ["ONCO-100"], "organiser": "Marketing", "country": "US", "external_id": "demo-webinar"})
    if new_hcps[40:70]:
        invite(session, marketer, mv, webinar, [h.id for h, _code in new_hcps[40:70]])
    rt_start = (now - timedelta(days=10)).replace(hour=18, minute=0, second=0, microsecond=0)
    round_table, _ = create_event(session, msl, sv, {
        "name": "Neurology round table", "type": "round_table", "starts_at": rt_start,
        "ends_at": rt_start + timedelta(hours=2), "venue": "Chicago", "products": ["NEURO-5"],
        "organiser": "Medical Affairs", "sensitivity": "medical", "country": "US", "external_id": "demo-rt"})
    for hcp, _code in new_hcps[70:78]:
        record_attendance(session, msl, sv, round_table, hcp.id, "attended")
    return 3


def _call_centre(session: DbSession, users: dict[str, Any], new_hcps: list[tuple[Any, str]], rnd: random.Random,
                 now: datetime) -> int:
    """A year of call-centre contacts: product questions, medical inquiries (some answered), adverse events
    (one overdue, one closed with its forwarding record) and complaints."""
    from crm.callcentre.models import AdverseEventCase, MedicalInquiry
    from crm.callcentre.services import answer_inquiry, close_case, create_contact

    agent, msl = users["agent@demo.example"], users["msl@demo.example"]
    av, mv = viewer_for(session, agent), viewer_for(session, msl)
    script = [
        ("product_information", "Asked about the Cardiozol pack sizes", "Sent the product leaflet."),
        ("medical_inquiry", "Question on Neurolin dosing in renal impairment", "Forwarded to Medical Affairs."),
        ("complaint", "Damaged pack received from the wholesaler", "Replacement arranged."),
        ("sample_request", "Requests Cardiozol starter samples", "Rep to follow up."),
        ("adverse_event", "Patient developed a rash after starting Oncorex", "Reporter: the HCP; product ONCO-100."),
    ]
    made = 0
    for n, (hcp, _code) in enumerate(new_hcps[-60:]):
        reason, summary, details = script[n % len(script)]
        when = now - timedelta(days=rnd.randint(2, 360), hours=rnd.randint(0, 8))
        if reason == "adverse_event" and n < 10:
            when = now - timedelta(hours=30)  # still open past its 24-hour clock: overdue in the queue
        create_contact(session, agent, av, hcp_id=hcp.id, occurred_at=when, direction="inbound", medium="phone",
                       reason=reason, summary=summary, details=details,
                       products=["ONCO-100"] if reason == "adverse_event" else [],
                       external_id=f"demo-cc-{hcp.id}")
        made += 1
    session.flush()
    for k, inquiry in enumerate(session.scalars(select(MedicalInquiry).order_by(MedicalInquiry.id)).all()):
        if k % 2 == 0 and inquiry.status == "open":
            answer_inquiry(session, msl, mv, inquiry, medium="email",
                           answer="No dose change is needed for mild impairment; see section 4.2 of the SmPC.")
    oldest = session.scalars(select(AdverseEventCase).where(AdverseEventCase.status == "open")
                             .order_by(AdverseEventCase.id.desc())).first()
    if oldest is not None:
        close_case(session, msl, mv, oldest, forwarded_by="Dr. Mia Medic", forwarded_at=now - timedelta(hours=1),
                   pv_reference="PV-2026-0042")
    return made


def _orders(session: DbSession, users: dict[str, Any], new_hcps: list[tuple[Any, str]], rnd: random.Random) -> int:
    """A few orders by the north rep: some submitted (queued for the ERP), one still a draft."""
    from crm.orders.services import capture_order, submit_order

    rep = users["rep.north@demo.example"]
    viewer = viewer_for(session, rep)
    mine = [h for h, code in new_hcps if code == "NE-01"][:6]
    for n, hcp in enumerate(mine):
        order = capture_order(session, rep, viewer, hcp_id=hcp.id,
                              lines=[{"sku": "CARD-10", "quantity": rnd.randint(1, 5) * 10},
                                     {"sku": "CARD-20", "quantity": 10}])
        if n < 5:
            submit_order(session, rep, viewer, order.id, idempotency_key=f"demo-order-{hcp.id}")
    return len(mine)


def register(group: Any) -> None:
    import click
    from flask import current_app

    from crm.extensions import db

    @group.command("demo")
    @click.option("--hcps", default=HCP_COUNT, show_default=True, help="How many demo HCPs.")
    def demo_command(hcps: int) -> None:
        """Load a realistic demo data set (idempotent) and print the demo logins."""
        if current_app.config.get("CRM_ENV") == "production":
            raise click.ClickException("refusing to load demo data with CRM_ENV=production")
        counts = load_demo(db.session, say=click.echo, hcps=hcps)
        db.session.commit()
        click.echo("demo data: " + ", ".join(f"{v} {k}" for k, v in counts.items()) + " created")
        click.echo("demo logins (email / password):")
        for role, email, password in demo_logins():
            click.echo(f"  {role:<12} {email:<28} {password}")
