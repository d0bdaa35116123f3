"""Samples in a visit (issue 11): a sample product, a registered lot good on the visit's day, a quantity
within the product's maximum, and a real signature (not a blank pad). API, services and the page."""

from __future__ import annotations

import struct
import zlib
from datetime import date

import pytest
from sqlalchemy import select

from crm.audit.models import AuditRecord
from crm.errors import Invalid
from crm.products.models import Product, SampleLot
from crm.visits import services
from crm.visits.models import Visit
from crm.visits.signature import MIN_INK_PIXELS, SignatureImageError, ink_pixels
from tests.test_visits_pages import form
from tests.visits_support import (
    BLANK_SIGNATURE,
    SIGNATURE,
    SIGNED_PNG,
    data_url,
    drawn,
    make_world,
    png,
    visit_data,
    visit_json,
)


@pytest.fixture
def w(db, factory):
    world = make_world(db, factory)
    old = SampleLot(product_id=world.products["CARDIO-10"].id, lot_number="OLD-LOT", expires_on=date(2026, 1, 11))
    last_day = SampleLot(product_id=world.products["CARDIO-10"].id, lot_number="LAST-DAY",
                         expires_on=date(2026, 1, 12))
    only_20 = SampleLot(product_id=world.products["CARDIO-20"].id, lot_number="ONLY-20", expires_on=date(2099, 1, 1))
    db.add_all([old, last_day, only_20])
    db.flush()
    return world


def post(api, user, **kw):
    return api(user).post("/api/v1/visits", json=visit_json(kw.pop("hcp_id"), **kw))


def sample(sku="CARDIO-10", quantity=2, lot="L1"):
    return {"sku": sku, "quantity": quantity, "lot": lot}


# -- the rules, over the API: 422 with the field path ----------------------------------------------------

@pytest.mark.parametrize("given, field, words", [
    (sample(sku="PROMO-1"), "samples.0.sku", "not a sample product"),
    (sample(sku="NOPE-9"), "samples.0.sku", "unknown sku"),
    (sample(sku="OLD-1"), "samples.0.sku", "no longer active"),
    (sample(lot="NO-SUCH-LOT"), "samples.0.lot", "no such lot of CARDIO-10"),
    (sample(lot="ONLY-20"), "samples.0.lot", "no such lot of CARDIO-10"),  # a lot of another product
    (sample(lot="OLD-LOT"), "samples.0.lot", "expired on 2026-01-11"),
    (sample(quantity=11), "samples.0.quantity", "at most 10 unit(s) of CARDIO-10 per visit"),
    (sample(quantity=0), "samples.0.quantity", "greater than or equal to 1"),
])
def test_each_sample_rule_is_a_422_on_its_field(api, w, db, given, field, words):
    resp = post(api, w.rep, hcp_id=w.hcp.id, samples=[given])
    assert resp.status_code == 422, resp.get_json()
    errors = resp.get_json()["errors"]
    assert field in errors and words in " ".join(errors[field]), errors
    assert db.scalar(select(Visit.id)) is None


def test_a_good_sample_passes_on_the_lots_last_day_and_up_to_the_maximum(api, w):
    # visit_json's visit is on 2026-01-12 (09:30 UTC): LAST-DAY expires that day and is still good
    resp = post(api, w.rep, hcp_id=w.hcp.id, samples=[sample(lot="LAST-DAY", quantity=4), sample(quantity=6)])
    assert resp.status_code == 201, resp.get_json()
    assert [s["lot"] for s in resp.get_json()["samples"]] == ["LAST-DAY", "L1"]


def test_the_maximum_counts_every_line_of_a_product_and_follows_the_product_setting(api, w, db):
    resp = post(api, w.rep, hcp_id=w.hcp.id, samples=[sample(quantity=6), sample(quantity=5, lot="A")])
    assert resp.status_code == 422
    assert "this visit gives 11" in " ".join(resp.get_json()["errors"]["samples.1.quantity"])
    w.products["CARDIO-10"].max_sample_quantity = 2
    db.flush()
    resp = post(api, w.rep, hcp_id=w.hcp.id, samples=[sample(quantity=3)])
    assert "at most 2 unit(s)" in " ".join(resp.get_json()["errors"]["samples.0.quantity"])


def test_all_sample_problems_come_at_once(api, w):
    resp = post(api, w.rep, hcp_id=w.hcp.id, samples=[sample(sku="PROMO-1"), sample(lot="OLD-LOT", quantity=30)])
    errors = resp.get_json()["errors"]
    assert {"samples.0.sku", "samples.1.lot", "samples.1.quantity"} <= set(errors)


def test_moving_a_visit_past_its_lots_expiry_is_refused(api, w):
    created = post(api, w.rep, hcp_id=w.hcp.id, samples=[sample(lot="LAST-DAY")])
    assert created.status_code == 201
    moved = api(w.rep).patch(f"/api/v1/visits/{created.get_json()['id']}",
                             json={"occurred_at": "2026-01-13T08:00:00Z"})
    assert moved.status_code == 422 and "samples.0.lot" in moved.get_json()["errors"]


def test_submit_checks_the_samples_again(db, w):
    visit = services.create_visit(db, w.rep, w.viewer(w.rep), visit_data(w.hcp.id, samples=[sample()]))
    w.products["CARDIO-10"].is_sample = False  # an admin withdrew it from sampling meanwhile
    db.flush()
    with pytest.raises(Invalid) as err:
        services.submit_visit(db, w.rep, w.viewer(w.rep), visit, signature=SIGNATURE)
    assert "not a sample product" in err.value.errors["samples.0.sku"][0]


# -- the signature: a blank pad is refused ---------------------------------------------------------------

@pytest.mark.parametrize("name, image", [
    ("transparent", png(160, 40, lambda x, y: (0, 0, 0, 0))),
    ("white", png(160, 40, lambda x, y: (255, 255, 255, 255))),
    ("white RGB", png(160, 40, lambda x, y: (255, 255, 255), colour=2)),
    ("a dot", png(160, 40, lambda x, y: (0, 0, 0, 255) if (x, y) in ((5, 5), (5, 6), (6, 5)) else (0, 0, 0, 0))),
    ("ink hidden by alpha", png(160, 40, lambda x, y: (0, 0, 0, 20))),
    ("pale grey scribble", png(160, 40, lambda x, y: (230, 230, 230, 255) if drawn(x, y)[3] else (0, 0, 0, 0))),
])
def test_blank_signatures_are_refused(api, w, name, image):
    resp = post(api, w.rep, hcp_id=w.hcp.id, samples=[sample()], signature=data_url(image))
    assert resp.status_code == 422, name
    assert "blank" in " ".join(resp.get_json()["errors"]["signature"]), name


def test_blank_signature_is_refused_at_submit_too(api, w):
    created = post(api, w.rep, hcp_id=w.hcp.id, samples=[sample()])
    resp = api(w.rep).post(f"/api/v1/visits/{created.get_json()['id']}/submit", json={"signature": BLANK_SIGNATURE})
    assert resp.status_code == 422 and "signature" in resp.get_json()["errors"]
    ok = api(w.rep).post(f"/api/v1/visits/{created.get_json()['id']}/submit", json={"signature": SIGNATURE})
    assert ok.status_code == 200 and ok.get_json()["signed"] is True


@pytest.mark.parametrize("raw, words", [
    (b"GIF89a", "not a PNG"),
    (SIGNED_PNG[:60], "truncated"),
    (SIGNED_PNG[:40] + bytes([SIGNED_PNG[40] ^ 1]) + SIGNED_PNG[41:], "checksum"),
    (png(1000, 600, lambda x, y: (0, 0, 0, 255)), "too large"),
])
def test_broken_or_huge_images_are_refused(api, w, raw, words):
    resp = post(api, w.rep, hcp_id=w.hcp.id, signature=data_url(raw))
    assert resp.status_code == 422 and words in " ".join(resp.get_json()["errors"]["signature"])


# The decoder: every filter, colour type, bit depth and interlacing gives the same count of ink.

def _filter(kind: int, line: bytes, prior: bytes, bpp: int) -> bytes:
    out = bytearray()
    for i, x in enumerate(line):
        a = line[i - bpp] if i >= bpp else 0
        b = prior[i]
        c = prior[i - bpp] if i >= bpp else 0
        if kind == 0:
            pred = 0
        elif kind == 1:
            pred = a
        elif kind == 2:
            pred = b
        elif kind == 3:
            pred = (a + b) // 2
        else:
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            pred = a if pa <= pb and pa <= pc else b if pb <= pc else c
        out.append((x - pred) & 0xFF)
    return bytes(out)


def encode(width, height, rows, colour, depth, *, filters=(0,), interlace=False, extra=()):
    """A PNG from unfiltered scanline bytes ``rows(w, h, x0, y0, dx, dy)`` (per pass when interlaced)."""
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}.get(colour, 1)
    bpp = max(1, channels * depth // 8)
    passes = ([(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]
              if interlace else [(0, 0, 1, 1)])
    data = b""
    n = 0
    for x0, y0, dx, dy in passes:
        w, h = (width - x0 + dx - 1) // dx, (height - y0 + dy - 1) // dy
        if w <= 0 or h <= 0:
            continue
        lines = rows(w, h, x0, y0, dx, dy)
        prior = bytes(len(lines[0]))
        for line in lines:
            kind = filters[n % len(filters)]
            n += 1
            data += bytes([kind]) + _filter(kind, line, prior, bpp)
            prior = line
    header = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 1 if interlace else 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + b"".join(chunk(k, v) for k, v in extra)
            + chunk(b"IDAT", zlib.compress(data)) + chunk(b"IEND", b""))


def stroke(x, y):
    return 10 <= x < 90 and abs(y - 15) <= 1  # 80 x 3 = 240 ink pixels


def rgba_rows(w, h, x0, y0, dx, dy):
    return [bytes(v for i in range(w) for v in ((0, 0, 0, 255) if stroke(x0 + i * dx, y0 + j * dy) else (0, 0, 0, 0)))
            for j in range(h)]


def packed_rows(depth, ink_value, paper_value):
    def rows(w, h, x0, y0, dx, dy):
        out = []
        for j in range(h):
            bits = "".join(format(ink_value if stroke(x0 + i * dx, y0 + j * dy) else paper_value, f"0{depth}b")
                           for i in range(w))
            bits += "0" * (-len(bits) % 8)
            out.append(int(bits, 2).to_bytes(len(bits) // 8, "big") if bits else b"")
        return out
    return rows


def rows16(channels_of):
    def rows(w, h, x0, y0, dx, dy):
        return [b"".join(struct.pack(">" + "H" * len(channels_of(True)), *channels_of(stroke(x0 + i * dx, y0 + j * dy)))
                         for i in range(w)) for j in range(h)]
    return rows


@pytest.mark.parametrize("filters", [(0,), (1,), (2,), (3,), (4,), (0, 1, 2, 3, 4)])
@pytest.mark.parametrize("interlace", [False, True])
def test_decoder_counts_the_same_ink_under_every_filter_and_interlacing(filters, interlace):
    image = encode(100, 30, rgba_rows, 6, 8, filters=filters, interlace=interlace)
    assert ink_pixels(image, enough=10_000) == 240


@pytest.mark.parametrize("name, image", [
    ("grey 8", encode(100, 30, packed_rows(8, 10, 255), 0, 8, filters=(4,))),
    ("grey 1", encode(100, 30, packed_rows(1, 0, 1), 0, 1, filters=(1, 3))),
    ("grey 4 interlaced", encode(100, 30, packed_rows(4, 2, 15), 0, 4, interlace=True)),
    ("palette 2", encode(100, 30, packed_rows(2, 1, 0), 3, 2, filters=(2,),
                         extra=[(b"PLTE", bytes([255, 255, 255, 0, 0, 128]))])),
    ("palette 8 with tRNS", encode(100, 30, packed_rows(8, 1, 0), 3, 8,
                                   extra=[(b"PLTE", bytes([0, 0, 0, 0, 0, 0])), (b"tRNS", bytes([0, 255]))])),
    ("RGB 16", encode(100, 30, rows16(lambda ink: (0, 0, 0) if ink else (65535, 65535, 65535)), 2, 16,
                      filters=(4,))),
    ("grey+alpha 16", encode(100, 30, rows16(lambda ink: (0, 65535) if ink else (0, 0)), 4, 16, filters=(3,))),
])
def test_decoder_reads_every_colour_type_and_depth(name, image):
    assert ink_pixels(image, enough=10_000) == 240, name


def test_decoder_stops_counting_at_enough_and_refuses_bad_data():
    total = ink_pixels(SIGNED_PNG, enough=10**6)
    assert total > 160 and MIN_INK_PIXELS <= ink_pixels(SIGNED_PNG) < total  # stops after the row that had enough
    with pytest.raises(SignatureImageError, match="palette PNG without a palette"):
        ink_pixels(encode(10, 3, packed_rows(8, 1, 0), 3, 8))
    with pytest.raises(SignatureImageError, match="colour type"):
        ink_pixels(encode(10, 3, packed_rows(8, 1, 0), 5, 8))
    short = encode(100, 30, rgba_rows, 6, 8)
    idat = short.index(b"IDAT")
    body = zlib.compress(zlib.decompress(short[idat + 4:short.index(b"IEND") - 8])[:500])
    broken = short[:idat - 4] + struct.pack(">I", len(body)) + b"IDAT" + body + struct.pack(
        ">I", zlib.crc32(b"IDAT" + body)) + short[short.index(b"IEND") - 4:]
    with pytest.raises(SignatureImageError, match="missing image data"):
        ink_pixels(broken)


# -- the page: the messages next to the fields ------------------------------------------------------------

def test_the_page_shows_sample_problems_and_keeps_the_input(client, auth, w, db):
    auth.login(w.rep)
    token = auth.csrf_token(f"/visits/new?hcp_id={w.hcp.id}")
    data = form(token, w.hcp.id, action="submit", sample_sku=["PROMO-1", "CARDIO-10"], sample_quantity=["1", "12"],
                sample_lot=["L1", "OLD-LOT"], signature=SIGNATURE)
    resp = client.post("/visits/new", data=data)
    page = resp.get_data(as_text=True)
    assert resp.status_code == 422
    assert "Sample 1 sku" in page and "not a sample product" in page
    assert "Sample 2 lot" in page and "expired on 2026-01-11" in page
    assert "Sample 2 quantity" in page and "at most 10 unit(s)" in page
    assert 'value="OLD-LOT"' in page and db.query(Visit).count() == 0


def test_the_page_refuses_a_blank_signature(client, auth, w, db):
    auth.login(w.rep)
    token = auth.csrf_token(f"/visits/new?hcp_id={w.hcp.id}")
    data = form(token, w.hcp.id, action="submit", sample_sku=["CARDIO-10"], sample_quantity=["2"],
                sample_lot=["L1"], signature=BLANK_SIGNATURE)
    resp = client.post("/visits/new", data=data)
    assert resp.status_code == 422 and "the HCP has not signed" in resp.get_data(as_text=True)
    assert db.query(Visit).count() == 0
    data["signature"] = SIGNATURE
    assert client.post("/visits/new", data=data).status_code == 302
    assert db.query(Visit).one().status == "submitted"


# -- product admin: sample settings and lots (API and command line) ------------------------------------------

def test_admin_sets_sample_settings_and_registers_lots(api, w, db):
    admin = api(w.admin)
    resp = admin.patch("/api/v1/products/PROMO-1", json={"is_sample": True, "max_sample_quantity": 3})
    assert resp.status_code == 200 and resp.get_json()["is_sample"] is True
    assert resp.get_json()["max_sample_quantity"] == 3
    rec = db.scalar(select(AuditRecord).where(AuditRecord.action == "product.update"))
    assert rec.changes == {"is_sample": {"before": False, "after": True},
                           "max_sample_quantity": {"before": 10, "after": 3}}
    lot = admin.post("/api/v1/products/PROMO-1/lots", json={"lot_number": "P-1", "expires_on": "2027-06-30"})
    assert lot.status_code == 201 and lot.get_json()["lot_number"] == "P-1"
    again = admin.post("/api/v1/products/PROMO-1/lots", json={"lot_number": "P-1", "expires_on": "2027-07-31"})
    assert again.status_code == 409
    listed = api(w.rep).get("/api/v1/products/PROMO-1/lots").get_json()["items"]
    assert [(x["lot_number"], x["expires_on"]) for x in listed] == [("P-1", "2027-06-30")]
    assert post(api, w.rep, hcp_id=w.hcp.id, samples=[sample(sku="PROMO-1", lot="P-1", quantity=3)]).status_code == 201
    catalogue = api(w.rep).get("/api/v1/products?q=PROMO").get_json()["items"]
    assert catalogue[0]["is_sample"] is True and catalogue[0]["max_sample_quantity"] == 3


def test_lot_and_settings_refusals(api, w):
    admin = api(w.admin)
    not_sample = admin.post("/api/v1/products/PROMO-1/lots", json={"lot_number": "P-1", "expires_on": "2027-06-30"})
    assert not_sample.status_code == 422 and "not a sample product" in not_sample.get_json()["errors"]["sku"][0]
    assert admin.post("/api/v1/products/NOPE/lots", json={"lot_number": "P", "expires_on": "2027-06-30"}
                      ).status_code == 404
    blank = admin.post("/api/v1/products/CARDIO-10/lots", json={"lot_number": "  ", "expires_on": "2027-06-30"})
    assert blank.status_code == 422 and "lot_number" in blank.get_json()["errors"]
    assert admin.patch("/api/v1/products/CARDIO-10", json={"max_sample_quantity": 0}).status_code == 422
    assert admin.patch("/api/v1/products/CARDIO-10", json={"price": "1.00"}).status_code == 422  # the ERP's
    assert admin.patch("/api/v1/products/NOPE", json={"is_sample": True}).status_code == 404


@pytest.mark.parametrize("role", ["rep", "marketer", "call_centre", "medical", "compliance"])
def test_only_admins_manage_samples(api, w, db, role):
    c = api(getattr(w, role))
    resp = c.patch("/api/v1/products/PROMO-1", json={"is_sample": True})
    assert resp.status_code == 403 and resp.get_json()["rule"] == "product.manage:role"
    lot = c.post("/api/v1/products/CARDIO-10/lots", json={"lot_number": "X-1", "expires_on": "2027-06-30"})
    assert lot.status_code == 403
    assert c.get("/api/v1/products/CARDIO-10/lots").status_code == 200  # everyone reads
    assert db.get(Product, w.products["PROMO-1"].id).is_sample is False


def test_cli_sets_samples_and_lots(runner, w, db):
    result = runner.invoke(args=["crm", "products", "set-sample", "PROMO-1", "--sample", "--max-per-visit", "4"])
    assert result.exit_code == 0, result.output
    assert "PROMO-1: sample=yes, at most 4 per visit" in result.output
    added = runner.invoke(args=["crm", "products", "add-lot", "PROMO-1", "P-9", "--expires", "2027-03-31"])
    assert added.exit_code == 0 and "lot P-9 expires 2027-03-31" in added.output
    listed = runner.invoke(args=["crm", "products", "lots", "PROMO-1"])
    assert listed.exit_code == 0 and "P-9\t2027-03-31" in listed.output
    product = db.scalar(select(Product).where(Product.sku == "PROMO-1"))
    assert product.is_sample and product.max_sample_quantity == 4
    duplicate = runner.invoke(args=["crm", "products", "add-lot", "PROMO-1", "P-9", "--expires", "2027-03-31"])
    assert duplicate.exit_code == 1 and "already has lot P-9" in duplicate.output


def test_cli_refusals(runner, w):
    bad = runner.invoke(args=["crm", "products", "set-sample", "CARDIO-10", "--max-per-visit", "0"])
    assert bad.exit_code == 1 and "max_sample_quantity" in bad.output
    missing = runner.invoke(args=["crm", "products", "lots", "NOPE"])
    assert missing.exit_code == 1 and "No product with sku NOPE" in missing.output


def test_the_form_offers_sample_products_and_their_good_lots(client, auth, w, db):
    db.add(SampleLot(product_id=w.products["CARDIO-20"].id, lot_number="GONE-1", expires_on=date(2020, 1, 1)))
    db.flush()
    auth.login(w.rep)
    page = client.get(f"/visits/new?hcp_id={w.hcp.id}").get_data(as_text=True)
    rows = page[page.index('id="sample-rows"'):page.index('id="sample-row-template"')]
    assert "CARDIO-20, at most 10" in rows and "PROMO-1" not in rows
    assert "Not a sample" in page  # still offered as a product to detail
    lots = page[page.index('<datalist id="sample-lots">'):page.index("</datalist>")]
    assert 'value="ONLY-20"' in lots and "CARDIO-20, expires 2099-01-01" in lots and "GONE-1" not in lots
