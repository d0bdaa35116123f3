"""The transparency report: transfers of value per HCP per year, as CSV in two public shapes.

* US Open Payments, general payments file (program year 2021 onwards column names): one row per
  payment to a covered recipient (physicians and nurse practitioners in the US), amounts in USD.
* EFPIA disclosure template: one named row per HCP (and currency) who agreed to named disclosure,
  with the template's categories, and one aggregate row per currency for everyone else.

Every cell goes through ``csv_safe``: a value starting like a formula (= + - @ tab CR) gets a leading
apostrophe, so a spreadsheet shows it instead of running it.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from flask import current_app
from sqlalchemy import extract, select

from crm.access.policy import Viewer, require_write
from crm.db import DbSession, utcnow
from crm.events.currencies import minor_units
from crm.events.models import Event, TransferOfValue
from crm.events.services import named_disclosure
from crm.hcps.models import HCP
from crm.products.models import Product
from crm.reports import to_csv

OPEN_PAYMENTS_COLUMNS = (
    "Change_Type",
    "Covered_Recipient_Type",
    "Covered_Recipient_NPI",
    "Covered_Recipient_First_Name",
    "Covered_Recipient_Last_Name",
    "Recipient_Primary_Business_Street_Address_Line1",
    "Recipient_City",
    "Recipient_State",
    "Recipient_Zip_Code",
    "Recipient_Country",
    "Covered_Recipient_Primary_Type_1",
    "Covered_Recipient_Specialty_1",
    "Applicable_Manufacturer_or_Applicable_GPO_Making_Payment_Name",
    "Total_Amount_of_Payment_USDollars",
    "Date_of_Payment",
    "Number_of_Payments_Included_in_Total_Amount",
    "Form_of_Payment_or_Transfer_of_Value",
    "Nature_of_Payment_or_Transfer_of_Value",
    "Contextual_Information",
    "Related_Product_Indicator",
    "Covered_or_Noncovered_Indicator_1",
    "Indicate_Drug_or_Biological_or_Device_or_Medical_Supply_1",
    "Name_of_Drug_or_Biological_or_Device_or_Medical_Supply_1",
    "Record_ID",
    "Program_Year",
)

# Open Payments' own vocabulary for the nature and form of a payment.
OPEN_PAYMENTS_NATURE = {
    "meal": "Food and Beverage",
    "travel": "Travel and Lodging",
    "accommodation": "Travel and Lodging",
    "speaker_fee": ("Compensation for services other than consulting, including serving as faculty or as a "
                    "speaker at a venue other than a continuing education program"),
    "registration_fee": "Education",
}
OPEN_PAYMENTS_FORM = {
    "speaker_fee": "Cash or cash equivalent",
}
IN_KIND = "In-kind items and services"
# Who Open Payments covers: physicians and non-physician practitioners. Pharmacists are not covered.
COVERED_RECIPIENT = {
    "gp": ("Covered Recipient Physician", "Medical Doctor"),
    "specialist": ("Covered Recipient Physician", "Medical Doctor"),
    "nurse": ("Covered Recipient Non-Physician Practitioner", "Nurse Practitioner"),
}

EFPIA_CATEGORIES = (
    "Contribution to costs of Events: Registration Fees",
    "Contribution to costs of Events: Travel & Accommodation",
    "Fee for service and consultancy: Fees",
    "Fee for service and consultancy: Related expenses agreed in the fee for service or consultancy contract, "
    "including travel & accommodation relevant to the contract",
)
EFPIA_COLUMNS = (
    "Reporting_Year",
    "Disclosure",
    "Full Name",
    "HCP: City of Principal Practice",
    "Country of Principal Practice",
    "Principal Practice Address",
    "Unique country identifier",
    "Currency",
    *EFPIA_CATEGORIES,
    "TOTAL",
    "Number of Recipients in aggregate disclosure",
    "% of the number of Recipients included in the aggregate disclosure in the total number of Recipients disclosed",
)
_REGISTRATION, _TRAVEL, _FEES, _RELATED = EFPIA_CATEGORIES
# Expenses of an HCP who was paid a fee at the same event belong to that fee-for-service contract.
_CONTRACT_EXPENSES = frozenset({"travel", "accommodation", "meal"})


@dataclass
class Report:
    year: int
    header: tuple[str, ...]
    rows: list[list[Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def csv(self) -> str:
        return to_csv(self.header, self.rows)


def _money(value: Decimal, currency: str = "USD") -> str:
    return f"{value:.{minor_units(currency)}f}"


def _year_transfers(session: DbSession, year: int) -> list[tuple[TransferOfValue, HCP, Event]]:
    rows = session.execute(
        select(TransferOfValue, HCP, Event)
        .join(HCP, HCP.id == TransferOfValue.hcp_id)
        .join(Event, Event.id == TransferOfValue.event_id)
        .where(extract("year", TransferOfValue.paid_on) == year)
        .order_by(HCP.last_name, HCP.first_name, HCP.id, TransferOfValue.paid_on, TransferOfValue.id)
    ).all()
    return list(rows)


def _npi(hcp: HCP) -> str:
    return next((i.value for i in hcp.identifiers if i.kind == "npi"), "")


def _product_names(session: DbSession, skus: set[str]) -> dict[str, str]:
    if not skus:
        return {}
    return dict(session.execute(select(Product.sku, Product.name).where(Product.sku.in_(skus))).all())


def open_payments(session: DbSession, viewer: Viewer | None, year: int) -> Report:
    """General payments to US covered recipients in ``year``, one row per payment."""
    if viewer is not None:  # None: the command line, run by an operator of the server
        require_write(viewer, "transparency_report.read")
    report = Report(year, OPEN_PAYMENTS_COLUMNS)
    data = _year_transfers(session, year)
    names = _product_names(session, {e.products[0] for _, _, e in data if e.products})
    company = current_app.config.get("CRM_COMPANY_NAME", "")
    left_out: dict[str, int] = defaultdict(int)
    for tov, hcp, event in data:
        if hcp.country != "US":
            left_out["HCPs outside the US"] += 1
            continue
        if hcp.profession not in COVERED_RECIPIENT:
            left_out[f"{hcp.profession}s (not covered recipients)"] += 1
            continue
        if tov.currency != "USD":
            left_out["payments not in USD"] += 1
            continue
        recipient_type, primary_type = COVERED_RECIPIENT[hcp.profession]
        product = event.products[0] if event.products else ""
        report.rows.append([
            "NEW", recipient_type, _npi(hcp), hcp.first_name, hcp.last_name, hcp.address_line or "",
            hcp.city or "", hcp.state or "", hcp.postal_code or "", "United States", primary_type,
            hcp.specialty or "", company, _money(tov.amount), f"{tov.paid_on:%m/%d/%Y}", 1,
            OPEN_PAYMENTS_FORM.get(tov.kind, IN_KIND), OPEN_PAYMENTS_NATURE[tov.kind],
            f"{event.name} ({event.starts_at:%Y-%m-%d})" + (f": {tov.description}" if tov.description else ""),
            "Yes" if product else "No", "Covered" if product else "", "Drug" if product else "",
            names.get(product, product), tov.id, year,
        ])
    report.notes = [f"{n} transfer(s) left out: {why}" for why, n in sorted(left_out.items())]
    return report


def _efpia_category(tov: TransferOfValue, contracted: set[tuple[int, int]]) -> str:
    if tov.kind == "speaker_fee":
        return _FEES
    if tov.kind == "registration_fee":
        return _REGISTRATION
    if tov.kind in _CONTRACT_EXPENSES and (tov.hcp_id, tov.event_id) in contracted:
        return _RELATED
    return _TRAVEL


def efpia(session: DbSession, viewer: Viewer | None, year: int, country: str | None = None) -> Report:
    """Per HCP and currency: named rows for HCPs who agreed to named disclosure, one aggregate row per
    currency for the rest (the template's "other, not included above" section)."""
    if viewer is not None:  # None: the command line, run by an operator of the server
        require_write(viewer, "transparency_report.read")
    report = Report(year, EFPIA_COLUMNS)
    data = [(t, h, e) for t, h, e in _year_transfers(session, year) if country is None or h.country == country]
    contracted = {(t.hcp_id, t.event_id) for t, _, _ in data if t.kind == "speaker_fee"}
    per_hcp: dict[tuple[int, str], dict[str, Decimal]] = defaultdict(lambda: dict.fromkeys(EFPIA_CATEGORIES,
                                                                                          Decimal(0)))
    hcps: dict[int, HCP] = {}
    for tov, hcp, _event in data:
        hcps[hcp.id] = hcp
        per_hcp[(hcp.id, tov.currency)][_efpia_category(tov, contracted)] += tov.amount
    named = named_disclosure(session, hcps, utcnow())
    aggregate: dict[str, dict[str, Decimal]] = defaultdict(lambda: dict.fromkeys(EFPIA_CATEGORIES, Decimal(0)))
    recipients: dict[str, set[int]] = defaultdict(set)
    aggregated: dict[str, set[int]] = defaultdict(set)
    for (hcp_id, currency), amounts in per_hcp.items():
        recipients[currency].add(hcp_id)
        if not named[hcp_id]:
            aggregated[currency].add(hcp_id)
            for cat, value in amounts.items():
                aggregate[currency][cat] += value
            continue
        hcp = hcps[hcp_id]
        report.rows.append([
            year, "individual", hcp.full_name, hcp.city or "", hcp.country, hcp.address_line or "", _npi(hcp),
            currency, *[_money(amounts[c], currency) for c in EFPIA_CATEGORIES],
            _money(sum(amounts.values(), Decimal(0)), currency), "", "",
        ])
    for currency in sorted(aggregate):
        amounts = aggregate[currency]
        share = Decimal(100) * len(aggregated[currency]) / len(recipients[currency])
        report.rows.append([
            year, "aggregate", "Other, not included above (no consent to individual disclosure)", "",
            country or "", "", "", currency, *[_money(amounts[c], currency) for c in EFPIA_CATEGORIES],
            _money(sum(amounts.values(), Decimal(0)), currency), len(aggregated[currency]), f"{share:.1f}",
        ])
    return report


def summary_by_hcp(session: DbSession, year: int) -> list[dict[str, Any]]:
    """On-screen view: per HCP and currency, the year's total and its count of transfers."""
    out: dict[tuple[int, str], dict[str, Any]] = {}
    for tov, hcp, _event in _year_transfers(session, year):
        row = out.setdefault((hcp.id, tov.currency), {"hcp": hcp, "currency": tov.currency, "total": Decimal(0),
                                                      "count": 0, "kinds": defaultdict(Decimal)})
        row["total"] += tov.amount
        row["count"] += 1
        row["kinds"][tov.kind] += tov.amount
    return list(out.values())


def report_years(session: DbSession) -> list[int]:
    years = {int(y) for y in session.scalars(select(extract("year", TransferOfValue.paid_on)).distinct())
             if y is not None}
    years.add(utcnow().year)
    return sorted(years, reverse=True)
