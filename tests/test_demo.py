"""`crm demo` loads a realistic data set through the services, and a second run adds nothing."""

from sqlalchemy import func, select

from crm.auth.models import User
from crm.hcps.models import HCP
from crm.products.models import Product, SampleLot
from crm.timeline.models import Interaction
from crm.visit_plans.models import VisitPlan
from crm.visits.models import Visit, VisitSample


def _counts(db):
    return {m.__name__: db.scalar(select(func.count()).select_from(m)) for m in (User, HCP, Visit, Interaction,
                                                                                    VisitPlan)}


def test_demo_is_complete_and_idempotent(runner, db):
    result = runner.invoke(args=["crm", "demo", "--hcps", "90"])
    assert result.exit_code == 0, result.output
    assert "rep.north@demo.example" in result.output and "field_rep-demo-2026" in result.output
    first = _counts(db)
    assert first["User"] == 7 and first["HCP"] == 90 and first["Visit"] > 90
    assert first["VisitPlan"] == 30  # a working week of plans for each of the two demo reps (issue 14 item 5)
    channels = set(db.scalars(select(Interaction.channel).distinct()))
    assert {"visit", "consent", "event", "call_centre", "order", "email", "survey"} <= channels
    # surveys (issue 12): one NPS survey sent and answered by a handful of HCPs, so its results mean something
    from crm.surveys.models import Survey
    from crm.surveys.services import survey_results

    (survey,) = db.scalars(select(Survey)).all()
    results = survey_results(db, survey)
    assert results["responses"] >= 8 and results["nps"] is not None and results["by_territory"]
    sensitivities = set(db.scalars(select(Interaction.sensitivity).distinct()))
    assert {"standard", "medical", "pv"} <= sensitivities
    # samples (issue 11): given from registered lots of a sample product, good on the visit's day, signed
    sample_product = db.scalar(select(Product).where(Product.sku == "CARD-S"))
    assert sample_product.is_sample and db.scalar(select(func.count()).select_from(SampleLot)) == 3
    given = db.execute(select(Visit, VisitSample, SampleLot).join(VisitSample, VisitSample.visit_id == Visit.id)
                       .join(SampleLot, SampleLot.lot_number == VisitSample.lot)).all()
    assert len(given) == db.scalar(select(func.count()).select_from(VisitSample)) > 0
    assert all(lot.expires_on >= visit.occurred_at.date() and visit.signature for visit, _s, lot in given)
    again = runner.invoke(args=["crm", "demo", "--hcps", "90"])
    assert again.exit_code == 0, again.output
    assert _counts(db) == first


def test_demo_logins_work(runner, db, client):
    assert runner.invoke(args=["crm", "demo", "--hcps", "12"]).exit_code == 0
    for email, password in [("rep.north@demo.example", "field_rep-demo-2026"),
                            ("compliance@demo.example", "compliance-demo-2026")]:
        resp = client.post("/api/v1/auth/token", json={"email": email, "password": password})
        assert resp.status_code == 201
