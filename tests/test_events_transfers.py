"""Transfers of value: amounts and currencies, running annual totals, the per-country cap, the report."""

from __future__ import annotations

import csv
import io
from datetime import date
from decimal import Decimal

from crm.db import utcnow
from crm.events import reports
from crm.events import services as events
from crm.events.currencies import amount_problem
from crm.hcps.identifiers import make_npi
from crm.hcps.models import HCPIdentifier
from crm.products.models import Product
from tests.events_support import make_event, viewer_of

TODAY = utcnow().date()
YEAR = TODAY.year


def _body(hcp, **kw):
    body = {"hcp_id": hcp.id, "kind": "meal", "amount": "45.50", "currency": "USD", "date": TODAY.isoformat()}
    body.update(kw)
    return body


def test_transfer_recorded_with_running_total(api, factory, db):
    marketer = factory.user("marketer")
    event = make_event(db, marketer)
    hcp = factory.hcp()
    c = api(marketer)
    first = c.post(f"/api/v1/events/{event.id}/transfers", json=_body(hcp))
    assert first.status_code == 201, first.get_json()
    second = c.post(f"/api/v1/events/{event.id}/transfers", json=_body(hcp, kind="travel", amount="300"))
    body = second.get_json()
    assert body["amount"] == "300" and body["date"] == TODAY.isoformat() and body["warning"] is None
    assert body["annual"]["totals"] == [{"currency": "USD", "amount": "345.500"}]
    listed = c.get(f"/api/v1/events/{event.id}/transfers").get_json()["items"]
    assert [t["kind"] for t in listed] == ["meal", "travel"]
    per_hcp = api(factory.user("field_rep")).get(f"/api/v1/hcps/{hcp.id}/transfers").get_json()
    assert per_hcp["year"] == YEAR and len(per_hcp["items"]) == 2
    assert Decimal(per_hcp["annual"]["totals"][0]["amount"]) == Decimal("345.50")


def test_unknown_currency_is_422(api, factory, db):
    marketer = factory.user("marketer")
    event = make_event(db, marketer)
    hcp = factory.hcp(country="DE")
    c = api(marketer)
    for code in ("ABC", "XAU", "XXX", "usd!"):
        resp = c.post(f"/api/v1/events/{event.id}/transfers", json=_body(hcp, currency=code))
        assert resp.status_code == 422 and "currency" in resp.get_json()["errors"], code
    assert c.post(f"/api/v1/events/{event.id}/transfers", json=_body(hcp, currency="eur")).status_code == 201


def test_negative_zero_and_too_precise_amounts_are_422(api, factory, db):
    marketer = factory.user("marketer")
    event = make_event(db, marketer)
    hcp = factory.hcp()
    c = api(marketer)
    for amount in ("-10", "0", "0.00", "12.345", "NaN", "abc"):
        resp = c.post(f"/api/v1/events/{event.id}/transfers", json=_body(hcp, amount=amount))
        assert resp.status_code == 422 and "amount" in resp.get_json()["errors"], amount
    assert amount_problem(Decimal("1000"), "JPY") is None
    assert amount_problem(Decimal("10.5"), "JPY") is not None
    assert amount_problem(Decimal("1.125"), "KWD") is None


def test_transfer_other_refusals(api, factory, db):
    marketer = factory.user("marketer")
    event = make_event(db, marketer)
    hcp = factory.hcp()
    c = api(marketer)
    url = f"/api/v1/events/{event.id}/transfers"
    assert c.post(url, json=_body(hcp, kind="gift")).status_code == 422
    assert c.post(url, json=_body(hcp, date="2999-01-01")).status_code == 422
    assert c.post(url, json=_body(hcp, hcp_id=999999)).status_code == 422
    # a US HCP is paid in USD (Open Payments reports in USD)
    wrong = c.post(url, json=_body(hcp, currency="EUR"))
    assert wrong.status_code == 422 and "USD" in wrong.get_json()["errors"]["currency"][0]
    for role in ("field_rep", "call_centre", "compliance", "admin"):
        assert api(factory.user(role)).post(url, json=_body(hcp)).status_code == 403


def test_cap_warns(api, factory, db):
    admin, marketer = factory.user("admin"), factory.user("marketer")
    resp = api(admin).put("/api/v1/transfer-caps/us", json={"currency": "USD", "annual_cap": "500", "action": "warn"})
    assert resp.status_code == 200 and resp.get_json()["country"] == "US"
    event = make_event(db, marketer)
    hcp = factory.hcp()
    c = api(marketer)
    c.post(f"/api/v1/events/{event.id}/transfers", json=_body(hcp, amount="450"))
    over = c.post(f"/api/v1/events/{event.id}/transfers", json=_body(hcp, amount="100"))
    assert over.status_code == 201
    assert "over the US annual cap of USD 500.00" in over.get_json()["warning"]
    assert over.get_json()["annual"]["over_cap"] is True


def test_cap_blocks(api, factory, db):
    admin, marketer = factory.user("admin"), factory.user("marketer")
    api(admin).put("/api/v1/transfer-caps/DE", json={"currency": "EUR", "annual_cap": "1000", "action": "block"})
    event = make_event(db, marketer, country="DE")
    hcp = factory.hcp(country="DE")
    c = api(marketer)
    assert c.post(f"/api/v1/events/{event.id}/transfers", json=_body(hcp, amount="1000", currency="EUR")) \
        .status_code == 201
    refused = c.post(f"/api/v1/events/{event.id}/transfers", json=_body(hcp, amount="0.01", currency="EUR"))
    assert refused.status_code == 422 and refused.get_json()["errors"]["amount"][0].startswith("refused")
    # the cap is per calendar year
    last_year = date(YEAR - 1, 6, 1).isoformat()
    assert c.post(f"/api/v1/events/{event.id}/transfers",
                  json=_body(hcp, amount="10", currency="EUR", date=last_year)).status_code == 201


def test_cap_is_configured_by_admin_only(api, factory):
    body = {"currency": "USD", "annual_cap": "500", "action": "warn"}
    for role in ("marketer", "compliance", "field_rep"):
        assert api(factory.user(role)).put("/api/v1/transfer-caps/US", json=body).status_code == 403
    admin = api(factory.user("admin"))
    assert admin.put("/api/v1/transfer-caps/USA", json=body).status_code == 422
    assert admin.put("/api/v1/transfer-caps/US", json={**body, "currency": "ZZZ"}).status_code == 422
    assert admin.put("/api/v1/transfer-caps/US", json={**body, "action": "ignore"}).status_code == 422
    assert admin.put("/api/v1/transfer-caps/US", json={**body, "annual_cap": "-1"}).status_code == 422
    assert admin.get("/api/v1/transfer-caps").get_json()["items"] == []


def test_cap_status_for_the_invitation_screen(factory, db):
    admin, marketer = factory.user("admin"), factory.user("marketer")
    events.set_transfer_cap(db, admin, viewer_of(admin), "US", currency="USD", annual_cap=Decimal("100"),
                            action="warn")
    event = make_event(db, marketer)
    near, fine = factory.hcp(), factory.hcp()
    events.record_transfer(db, marketer, viewer_of(marketer), event, hcp_id=near.id, kind="meal",
                           amount=Decimal("85"), currency="USD", paid_on=TODAY)
    statuses = events.cap_statuses(db, [near, fine], YEAR)
    assert "close to the US annual cap" in statuses[near.id]["warning"]
    assert statuses[fine.id]["warning"] is None and statuses[fine.id]["cap"]["remaining"] == "100.000"


def _hcp_with_npi(factory, db, n, **kw):
    hcp = factory.hcp(**kw)
    db.add(HCPIdentifier(hcp_id=hcp.id, kind="npi", value=make_npi(n)))
    db.flush()
    db.refresh(hcp)
    return hcp


def _rows(text):
    return list(csv.DictReader(io.StringIO(text)))


def test_open_payments_report_columns_and_rows(api, factory, db):
    marketer, compliance = factory.user("marketer"), factory.user("compliance")
    db.add(Product(sku="CARDIO-10", name="Cardiozol 10 mg"))
    event = make_event(db, marketer)
    doctor = _hcp_with_npi(factory, db, 4242, first_name="Grace", last_name="Hopper", specialty="Cardiology")
    nurse = factory.hcp(profession="nurse")
    pharmacist = factory.hcp(profession="pharmacist")
    abroad = factory.hcp(country="FR")
    v = viewer_of(marketer)
    for hcp, kind in ((doctor, "speaker_fee"), (doctor, "meal"), (nurse, "registration_fee"), (pharmacist, "meal")):
        events.record_transfer(db, marketer, v, event, hcp_id=hcp.id, kind=kind, amount=Decimal("120.5"),
                               currency="USD", paid_on=TODAY)
    events.record_transfer(db, marketer, v, event, hcp_id=abroad.id, kind="meal", amount=Decimal("20"),
                           currency="EUR", paid_on=TODAY)
    resp = api(compliance).get(f"/api/v1/reports/transfers?year={YEAR}")
    assert resp.status_code == 200 and resp.mimetype == "text/csv"
    rows = _rows(resp.get_data(as_text=True))
    assert tuple(rows[0].keys()) == reports.OPEN_PAYMENTS_COLUMNS
    assert {r["Covered_Recipient_Type"] for r in rows} == {"Covered Recipient Physician",
                                                           "Covered Recipient Non-Physician Practitioner"}
    fee = next(r for r in rows if r["Covered_Recipient_Last_Name"] == "Hopper"
               and r["Form_of_Payment_or_Transfer_of_Value"] == "Cash or cash equivalent")
    assert fee["Covered_Recipient_NPI"] == make_npi(4242)
    assert fee["Total_Amount_of_Payment_USDollars"] == "120.50"
    assert fee["Date_of_Payment"] == TODAY.strftime("%m/%d/%Y")
    assert fee["Nature_of_Payment_or_Transfer_of_Value"].startswith("Compensation for services other than consulting")
    assert fee["Name_of_Drug_or_Biological_or_Device_or_Medical_Supply_1"] == "Cardiozol 10 mg"
    assert fee["Program_Year"] == str(YEAR) and fee["Covered_Recipient_Specialty_1"] == "Cardiology"
    assert len(rows) == 3  # the pharmacist and the French HCP are not Open Payments recipients
    report = reports.open_payments(db, None, YEAR)
    assert any("pharmacist" in n for n in report.notes) and any("outside the US" in n for n in report.notes)


def test_efpia_report_named_and_aggregate_rows(api, factory, db):
    marketer, compliance = factory.user("marketer"), factory.user("compliance")
    event = make_event(db, marketer, country="DE")
    named = factory.hcp(country="DE", first_name="Lise", last_name="Meitner", city="Berlin")
    anonymous = factory.hcp(country="DE")
    withdrew = factory.hcp(country="DE")
    v = viewer_of(marketer)
    api(marketer).post(f"/api/v1/hcps/{named.id}/disclosure-consent", json={"granted": True})
    events.record_disclosure_consent(db, marketer, v, withdrew.id, True)
    events.record_disclosure_consent(db, marketer, v, withdrew.id, False)
    for hcp, kind, amount in ((named, "speaker_fee", "1000"), (named, "travel", "250"), (named, "meal", "40"),
                              (anonymous, "registration_fee", "300"), (anonymous, "accommodation", "200"),
                              (withdrew, "travel", "100")):
        events.record_transfer(db, marketer, v, event, hcp_id=hcp.id, kind=kind, amount=Decimal(amount),
                               currency="EUR", paid_on=TODAY)
    resp = api(compliance).get(f"/api/v1/reports/transfers?year={YEAR}&format=efpia&country=de")
    rows = _rows(resp.get_data(as_text=True))
    assert tuple(rows[0].keys()) == reports.EFPIA_COLUMNS
    individual = [r for r in rows if r["Disclosure"] == "individual"]
    assert [r["Full Name"] for r in individual] == ["Lise Meitner"]
    lise = individual[0]
    fees, related = reports.EFPIA_CATEGORIES[2], reports.EFPIA_CATEGORIES[3]
    assert lise[fees] == "1000.00" and lise[related] == "290.00" and lise["TOTAL"] == "1290.00"
    assert lise["HCP: City of Principal Practice"] == "Berlin" and lise["Currency"] == "EUR"
    aggregate = [r for r in rows if r["Disclosure"] == "aggregate"]
    assert len(aggregate) == 1
    agg = aggregate[0]
    assert agg[reports.EFPIA_CATEGORIES[0]] == "300.00" and agg[reports.EFPIA_CATEGORIES[1]] == "300.00"
    assert agg["Number of Recipients in aggregate disclosure"] == "2"
    assert agg[reports.EFPIA_COLUMNS[-1]] == "66.7"


def test_report_is_formula_injection_safe(factory, db):
    marketer = factory.user("marketer")
    event = make_event(db, marketer, name="=HYPERLINK(\"http://evil.example\")")
    hcp = factory.hcp(first_name="@SUM(A1)", last_name="-2+3", city="+city")
    events.record_transfer(db, marketer, viewer_of(marketer), event, hcp_id=hcp.id, kind="meal",
                           amount=Decimal("10"), currency="USD", paid_on=TODAY)
    events.record_disclosure_consent(db, marketer, viewer_of(marketer), hcp.id, True)
    op = _rows(reports.open_payments(db, None, YEAR).csv())[0]
    assert op["Covered_Recipient_First_Name"] == "'@SUM(A1)" and op["Covered_Recipient_Last_Name"] == "'-2+3"
    assert op["Contextual_Information"].startswith("'=HYPERLINK")
    assert op["Recipient_City"] == "'+city"
    efpia = _rows(reports.efpia(db, None, YEAR).csv())[0]
    assert efpia["Full Name"] == "'@SUM(A1) -2+3"


def test_report_is_for_compliance_and_admin(api, factory):
    for role in ("field_rep", "marketer", "medical", "call_centre"):
        assert api(factory.user(role)).get(f"/api/v1/reports/transfers?year={YEAR}").status_code == 403
    assert api(factory.user("admin")).get(f"/api/v1/reports/transfers?year={YEAR}").status_code == 200
    assert api(factory.user("compliance")).get("/api/v1/reports/transfers").status_code == 422


def test_reports_cli(runner, factory, db, tmp_path):
    marketer = factory.user("marketer")
    event = make_event(db, marketer)
    hcp = factory.hcp(last_name="Curie")
    events.record_transfer(db, marketer, viewer_of(marketer), event, hcp_id=hcp.id, kind="travel",
                           amount=Decimal("99.99"), currency="USD", paid_on=TODAY)
    out = runner.invoke(args=["crm", "reports", "transfers", str(YEAR)])
    assert out.exit_code == 0, out.output
    assert out.output.splitlines()[0].startswith("Change_Type,Covered_Recipient_Type")
    assert "Curie" in out.output and "99.99" in out.output
    target = tmp_path / "efpia.csv"
    out = runner.invoke(args=["crm", "reports", "transfers", str(YEAR), "--format", "efpia", "--output", str(target)])
    assert out.exit_code == 0, out.output
    text = target.read_text(encoding="utf-8-sig")
    assert text.startswith("Reporting_Year,Disclosure,Full Name") and "aggregate" in text
