"""``crm products ...``: the sample settings of a product and its sample lots (the rest of the catalogue
comes from the ERP: ``crm erp sync``)."""

from __future__ import annotations

from datetime import date

import click
from flask.cli import AppGroup

from crm.errors import DomainError
from crm.extensions import db

products_cli = AppGroup("products", help="Sample products and their lots.")


def _fail(exc: DomainError) -> None:
    db.session.rollback()
    details = "; ".join(f"{k}: {' '.join(v)}" for k, v in getattr(exc, "errors", {}).items())
    click.echo(f"error: {exc.detail}" + (f" ({details})" if details else ""), err=True)
    raise SystemExit(1) from exc


@products_cli.command("set-sample")
@click.argument("sku")
@click.option("--sample/--not-sample", "is_sample", default=None, help="Reps may give it as a sample.")
@click.option("--max-per-visit", type=int, default=None, help="Units of it one visit may give at most.")
def set_sample(sku: str, is_sample: bool | None, max_per_visit: int | None) -> None:
    """Mark SKU as a sample product (or not) and set its per-visit maximum."""
    from crm.products.services import get_product, set_sample_settings

    try:
        product = get_product(db.session, sku)
        set_sample_settings(db.session, None, None, product, is_sample=is_sample, max_sample_quantity=max_per_visit)
    except DomainError as exc:
        _fail(exc)
        return
    db.session.commit()
    click.echo(f"{product.sku}: sample={'yes' if product.is_sample else 'no'}, "
               f"at most {product.max_sample_quantity} per visit")


@products_cli.command("add-lot")
@click.argument("sku")
@click.argument("lot_number")
@click.option("--expires", "expires", required=True, type=click.DateTime(formats=["%Y-%m-%d"]),
              help="Last day the lot may be given (YYYY-MM-DD).")
def add_lot(sku: str, lot_number: str, expires: object) -> None:
    """Register LOT_NUMBER of the sample product SKU with its expiry date."""
    from crm.products.services import add_sample_lot, get_product

    expires_on: date = expires.date()  # type: ignore[attr-defined]
    try:
        lot = add_sample_lot(db.session, None, None, get_product(db.session, sku), lot_number, expires_on)
    except DomainError as exc:
        _fail(exc)
        return
    db.session.commit()
    click.echo(f"{sku}: lot {lot.lot_number} expires {lot.expires_on.isoformat()}")


@products_cli.command("lots")
@click.argument("sku")
def list_lots(sku: str) -> None:
    """List the lots of SKU, latest expiry first."""
    from crm.products.services import get_product, sample_lots

    try:
        product = get_product(db.session, sku)
    except DomainError as exc:
        _fail(exc)
        return
    for lot in sample_lots(db.session, product):
        click.echo(f"{lot.lot_number}\t{lot.expires_on.isoformat()}")
