"""Each role's main journey in a real browser (Debian's chromium), at desktop (1280x800, mouse) and phone
(390x844, touch) size, with an axe-core scan of every main page on the way: no serious or critical violation.

The tests find things as a person does, by visible labels, roles and headings (and the few stable element
ids the pages promise), and check the outcome in the database where the page alone could not prove it.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from playwright.sync_api import Page, expect

from crm.visits.signature import MIN_INK_PIXELS
from tests_browser.conftest import Server, Size, axe_violations


def assert_accessible(page: Page) -> None:
    """No serious or critical axe-core violation on the page as it stands, and no script error so far."""
    problems = axe_violations(page)
    assert not problems, f"axe on {page.url}:\n" + "\n".join(problems)
    assert not getattr(page, "js_errors", []), f"script errors on {page.url}: {page.js_errors}"  # type: ignore


def go(page: Page, url: str) -> None:
    response = page.goto(url)
    assert response is not None and response.status == 200, f"{url}: {response and response.status}"


def draw(page: Page, pad: Any, size: Size, strokes: int = 3) -> None:
    """Signs on a pad: mouse drags at desktop size, real touch events (DevTools protocol) on the phone."""
    pad.scroll_into_view_if_needed()
    box = pad.bounding_box()
    assert box is not None
    left, top, w, h = box["x"], box["y"], box["width"], box["height"]
    paths = [[(left + w * (0.1 + 0.8 * i / 12), top + h * (0.3 + 0.15 * s + 0.25 * ((i % 3) - 1) / 2))
              for i in range(13)] for s in range(strokes)]
    if size.touch:
        cdp = page.context.new_cdp_session(page)
        for path in paths:
            x, y = path[0]
            cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [{"x": x, "y": y}]})
            for x, y in path[1:]:
                cdp.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [{"x": x, "y": y}]})
            cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
        cdp.detach()
    else:
        for path in paths:
            page.mouse.move(*path[0])
            page.mouse.down()
            for x, y in path[1:]:
                page.mouse.move(x, y, steps=2)
            page.mouse.up()


def tap(page: Page, pad: Any, size: Size) -> None:
    """One touch (or click) on the middle of a pad: a dot, not a signature."""
    pad.scroll_into_view_if_needed()
    box = pad.bounding_box()
    assert box is not None
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    if size.touch:
        page.touchscreen.tap(x, y)
    else:
        page.mouse.click(x, y)


def open_visit_form(page: Page, live_server: Server, scan: bool = False) -> str:
    """As the North-East rep: find an HCP of the territory by name, open the profile, *Log a visit*; with
    ``scan``, each page on the way is checked with axe."""
    last = live_server.scalar(
        "SELECT h.last_name FROM hcps h JOIN territories t ON t.id = h.territory_id WHERE t.code = 'NE-01' "
        "ORDER BY h.id LIMIT 1")
    go(page, live_server.url + "/hcps")
    page.get_by_label("Search").fill(last)
    page.get_by_label("Search").press("Enter")
    if scan:
        assert_accessible(page)
    page.get_by_role("link", name=re.compile(re.escape(last))).first.click()
    log_visit = page.get_by_role("link", name="Log a visit")
    expect(log_visit).to_be_visible()
    if scan:
        assert_accessible(page)  # the HCP's profile and timeline
    log_visit.click()
    expect(page.get_by_role("heading", name="Log a visit")).to_be_visible()
    if scan:
        assert_accessible(page)
    return last


def add_sample(page: Page, live_server: Server) -> None:
    lot = live_server.scalar(
        "SELECT l.lot_number FROM sample_lots l JOIN products p ON p.id = l.product_id "
        "WHERE p.sku = 'CARD-S' AND l.expires_on >= CURRENT_DATE ORDER BY l.expires_on LIMIT 1")
    row = page.locator("#sample-rows").get_by_label("Product").first
    row.select_option("CARD-S")
    page.locator("#sample-rows").get_by_label("Quantity").first.fill("2")
    page.locator("#sample-rows").get_by_label("Lot").first.fill(lot)


# -- field rep -------------------------------------------------------------------------------------------

def test_field_rep_logs_a_visit_with_a_sample_and_the_hcps_signature(as_role, live_server: Server, size: Size):
    page = as_role("field_rep")
    go(page, live_server.url + "/")
    expect(page.get_by_role("heading", name="Follow-ups due")).to_be_visible()
    assert_accessible(page)

    open_visit_form(page, live_server, scan=True)
    notes = f"Browser visit {size.name} {uuid.uuid4().hex[:8]}"
    add_sample(page, live_server)
    page.get_by_label("Notes", exact=True).fill(notes)
    pad = page.get_by_label("Signature pad", exact=True)
    draw(page, pad, size)
    expect(page.locator("#signature")).to_have_value(re.compile(r"^data:image/png;base64,"))
    page.get_by_role("button", name="Submit", exact=True).click()

    expect(page.get_by_text("Visit submitted: it is on the timeline.")).to_be_visible()
    visit = live_server.visit_by_notes(notes)
    assert visit["status"] == "submitted"
    assert visit["samples"] == [("CARD-S", 2)]
    # What was drawn is what the server stored: a PNG with ink on it, not a blank pad.
    assert visit["ink_pixels"] >= MIN_INK_PIXELS


def test_a_blank_or_dotted_signature_pad_is_refused(as_role, live_server: Server, size: Size):
    page = as_role("field_rep")
    open_visit_form(page, live_server)
    notes = f"Unsigned visit {size.name} {uuid.uuid4().hex[:8]}"
    add_sample(page, live_server)
    page.get_by_label("Notes", exact=True).fill(notes)

    page.get_by_role("button", name="Submit", exact=True).click()
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("The visit was not saved")
    expect(alert).to_contain_text("signature is required")

    # A single touch leaves a dot: the server refuses it as a blank pad.
    pad = page.get_by_label("Signature pad", exact=True)
    tap(page, pad, size)
    expect(page.locator("#signature")).to_have_value(re.compile(r"^data:image/png;base64,"))
    page.get_by_role("button", name="Submit", exact=True).click()
    expect(page.get_by_role("alert")).to_contain_text("blank")
    assert_accessible(page)  # the form with its error messages
    assert live_server.scalar("SELECT count(*) FROM visits WHERE notes = :n AND status = 'submitted'", n=notes) == 0


# -- call centre -----------------------------------------------------------------------------------------

def test_call_centre_agent_logs_a_contact(as_role, live_server: Server, size: Size):
    page = as_role("call_centre")
    go(page, live_server.url + "/call-centre")
    expect(page.get_by_role("heading", name="Log a contact")).to_be_visible()
    assert_accessible(page)
    last = live_server.scalar("SELECT last_name FROM hcps ORDER BY id DESC LIMIT 1")
    page.get_by_label("HCP").fill(last)
    page.get_by_role("button", name="Find").click()
    page.get_by_role("link", name=re.compile(re.escape(last))).first.click()
    expect(page.get_by_role("button", name="Save contact")).to_be_visible()
    assert_accessible(page)

    summary = f"Asked about dosing ({size.name} {uuid.uuid4().hex[:8]})"
    page.get_by_label("Reason").select_option(label="Product information")
    page.get_by_label("Summary").fill(summary)
    page.get_by_role("button", name="Save contact").click()

    expect(page.get_by_role("heading", name=re.compile(r"contact \d+", re.I))).to_be_visible()
    expect(page.get_by_text(summary)).to_be_visible()
    assert live_server.scalar("SELECT count(*) FROM call_centre_contacts WHERE summary = :s", s=summary) == 1


# -- marketer --------------------------------------------------------------------------------------------

def test_marketer_sends_a_campaign_only_after_the_confirmation(as_role, live_server: Server, size: Size):
    page = as_role("marketer")
    go(page, live_server.url + "/")
    assert_accessible(page)
    go(page, live_server.url + "/campaigns")
    assert_accessible(page)
    go(page, live_server.url + "/campaigns/new")
    name = f"Browser campaign {size.name} {uuid.uuid4().hex[:8]}"
    page.get_by_label("Name").fill(name)
    template = page.get_by_label("Template version")
    approved = template.locator("option", has_text="approved").first.get_attribute("value")
    template.select_option(approved)
    # Five HCPs chosen with the picker, by name (search as you type, then the match).
    hcps = live_server.column("SELECT id FROM hcps WHERE merged_into_id IS NULL ORDER BY id LIMIT 5")
    search = page.get_by_label("Or these HCPs")
    for hcp_id in hcps:
        last = live_server.scalar("SELECT last_name FROM hcps WHERE id = :i", i=hcp_id)
        search.fill(last)
        page.locator(f"#hcp_ids-option-{hcp_id}").click()
    expect(page.locator(".picker-chosen .chip")).to_have_count(5)
    page.get_by_role("button", name="Create campaign").click()
    expect(page.get_by_role("heading", name=name)).to_be_visible()

    page.get_by_role("link", name="Send now").click()
    expect(page.get_by_role("heading", name=f"Send “{name}”?")).to_be_visible()
    expect(page.locator("#confirm-send")).to_contain_text("expected to be mailed")
    assert_accessible(page)
    campaign_id = live_server.scalar("SELECT id FROM campaigns WHERE name = :n", n=name)
    # The confirmation page itself sends nothing.
    assert live_server.scalar("SELECT count(*) FROM campaign_messages WHERE campaign_id = :c", c=campaign_id) == 0

    page.get_by_role("button", name="Confirm and send").click()
    expect(page.get_by_text(re.compile(r"Accepted for sending to \d+ HCP\(s\); \d+ skipped\."))).to_be_visible()
    assert live_server.scalar("SELECT count(*) FROM campaign_messages WHERE campaign_id = :c", c=campaign_id) == 5


# -- compliance ------------------------------------------------------------------------------------------

def test_compliance_sees_what_waits_and_reviews_a_consent_ledger(as_role, live_server: Server, size: Size):
    page = as_role("compliance")
    go(page, live_server.url + "/")
    waiting = page.locator("#awaiting")
    expect(waiting.get_by_role("heading", name="Waiting for you")).to_be_visible()
    gaps = page.locator("#awaiting-gaps")
    expect(gaps).to_contain_text(re.compile(r"\d+\s*Consent gaps in the last 30 days"))
    assert_accessible(page)

    # The demo has recent consent gaps: follow the count to the list, and from a gap to the HCP's ledger.
    gaps.get_by_role("link").click()
    expect(page.get_by_role("heading", name="Consent gaps")).to_be_visible()
    assert_accessible(page)
    page.locator("tbody").get_by_role("link").first.click()
    expect(page.get_by_role("heading", name="Ledger")).to_be_visible()
    assert_accessible(page)
    note = f"Evidence checked ({size.name} {uuid.uuid4().hex[:8]})"
    page.get_by_label("Outcome").select_option("ok")
    page.get_by_label("Note").fill(note)
    page.get_by_role("button", name="Save review").click()
    expect(page.get_by_text(note)).to_be_visible()


# -- medical affairs and admin ---------------------------------------------------------------------------

def test_medical_affairs_queues(as_role, live_server: Server, size: Size):
    page = as_role("medical")
    go(page, live_server.url + "/")
    assert_accessible(page)
    go(page, live_server.url + "/medical-inquiries")
    expect(page.get_by_role("heading", name="Medical inquiries")).to_be_visible()
    assert_accessible(page)
    go(page, live_server.url + "/adverse-events")
    expect(page.get_by_role("heading", name="Adverse-event intake")).to_be_visible()
    assert_accessible(page)


def test_admin_home_and_master_data(as_role, live_server: Server, size: Size):
    page = as_role("admin")
    go(page, live_server.url + "/")
    expect(page.get_by_role("heading", name="At a glance")).to_be_visible()
    assert_accessible(page)
    go(page, live_server.url + "/admin/masterdata/")
    expect(page.get_by_role("heading", name="Master data", exact=True)).to_be_visible()
    assert_accessible(page)


def test_sign_in_page(browser, live_server: Server, size: Size):
    context = browser.new_context(viewport={"width": size.width, "height": size.height}, has_touch=size.touch)
    page = context.new_page()
    go(page, live_server.url + "/login")
    assert_accessible(page)
    page.get_by_label("Email").fill("agent@demo.example")
    page.get_by_label("Password").fill("wrong password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_be_visible()
    context.close()
