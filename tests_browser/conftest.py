"""The browser suite's fixtures: a live server on a temporary SQLite file with the demo data, Debian's
chromium driven by Playwright, a signed-in page per role at desktop and phone size, and the axe-core scan.

Run with ``make test-browser`` (after ``make browser-deps``). A browser that cannot start is an error,
never a skip: CI must not pass a suite that did not run.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, expect, sync_playwright

ROOT = Path(__file__).resolve().parent.parent
AXE_JS = Path(__file__).resolve().parent / "axe" / "node_modules" / "axe-core" / "axe.min.js"
CHROMIUM = os.environ.get("CRM_CHROMIUM", "/usr/bin/chromium")
# Root needs --no-sandbox; the rest keep chromium off the network (this machine's network is closed, and a
# test browser has no business calling home) and quiet.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]
# Generous waits: the machine is shared and small; a wait only costs time when something is really wrong.
expect.set_options(timeout=15_000)
DEMO_HCPS = 45  # enough for every channel of the demo, small enough to load in seconds

PASSWORDS = {
    "field_rep": ("rep.north@demo.example", "field_rep-demo-2026"),
    "marketer": ("marketer@demo.example", "marketer-demo-2026"),
    "call_centre": ("agent@demo.example", "call_centre-demo-2026"),
    "medical": ("msl@demo.example", "medical-demo-2026"),
    "compliance": ("compliance@demo.example", "compliance-demo-2026"),
    "admin": ("admin@demo.example", "admin-demo-2026"),
}


@dataclass(frozen=True)
class Size:
    name: str
    width: int
    height: int
    touch: bool


DESKTOP = Size("desktop", 1280, 800, touch=False)
PHONE = Size("phone", 390, 844, touch=True)


@dataclass
class Server:
    url: str
    app: Any

    def scalar(self, sql: str, **params: Any) -> Any:
        """One value from the demo database (ids of rows a test opens)."""
        from sqlalchemy import text

        from crm.extensions import db

        with self.app.app_context():
            try:
                return db.session.execute(text(sql), params).scalar()
            finally:
                db.session.remove()

    def column(self, sql: str, **params: Any) -> list[Any]:
        from sqlalchemy import text

        from crm.extensions import db

        with self.app.app_context():
            try:
                return list(db.session.execute(text(sql), params).scalars())
            finally:
                db.session.remove()

    def visit_by_notes(self, notes: str) -> dict[str, Any]:
        """The visit a test logged (found by its unique notes): status, samples, and the ink on its signature
        (decrypted through the model, as the app reads it)."""
        import base64

        from sqlalchemy import select

        from crm.extensions import db
        from crm.visits.models import Visit
        from crm.visits.signature import ink_pixels

        with self.app.app_context():
            try:
                visit = db.session.scalars(select(Visit).where(Visit.notes == notes)).one()
                png = base64.b64decode(visit.signature.split(",", 1)[1]) if visit.signature else b""
                return {"status": visit.status, "samples": [(s.sku, s.quantity) for s in visit.samples],
                        "ink_pixels": ink_pixels(png) if png else 0}
            finally:
                db.session.remove()


@pytest.fixture(scope="session")
def live_server() -> Iterator[Server]:
    """The app served on a loopback port from a fresh SQLite file: migrated, then ``crm demo``."""
    workdir = Path(tempfile.mkdtemp(prefix="crm-browser-"))
    os.environ["CRM_INSTANCE_PATH"] = str(workdir / "instance")
    os.environ["CRM_OUTBOX_DIR"] = str(workdir / "outbox")
    os.environ["CRM_DATABASE_URL"] = f"sqlite:///{workdir / 'browser.sqlite3'}"
    os.environ.pop("CRM_ENV", None)  # development: keys are generated under the instance folder
    os.environ["CRM_LOG_LEVEL"] = "WARNING"
    for args in (("db", "upgrade"), ("crm", "demo", "--hcps", str(DEMO_HCPS))):
        done = subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", *args], cwd=ROOT,
                              capture_output=True, text=True)
        if done.returncode:
            pytest.fail(f"flask {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-3000:]}")

    from werkzeug.serving import make_server

    from crm import create_app

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    app = create_app()
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield Server(f"http://127.0.0.1:{server.server_port}", app)
    server.shutdown()


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no browser at {CHROMIUM}: run `make browser-deps` (installs Debian's chromium)")
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    yield browser
    browser.close()


_STATES: dict[str, Any] = {}


def _context(browser: Browser, size: Size, **extra: Any) -> BrowserContext:
    return browser.new_context(viewport={"width": size.width, "height": size.height}, has_touch=size.touch,
                               is_mobile=size.touch, device_scale_factor=2 if size.touch else 1,
                               locale="en-US", timezone_id="Europe/Berlin", **extra)


def sign_in(page: Page, base: str, role: str) -> None:
    email, password = PASSWORDS[role]
    page.goto(f"{base}/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{base}/")


class RolePages:
    """Opens a page signed in as a role at a size; the sign-in happens once per role (its cookies reused)."""

    def __init__(self, browser: Browser, base: str, size: Size) -> None:
        self.browser, self.base, self.size = browser, base, size
        self.contexts: list[BrowserContext] = []

    def __call__(self, role: str) -> Page:
        if role not in _STATES:
            ctx = _context(self.browser, DESKTOP)
            page = ctx.new_page()
            sign_in(page, self.base, role)
            _STATES[role] = ctx.storage_state()
            ctx.close()
        ctx = _context(self.browser, self.size, storage_state=_STATES[role])
        ctx.set_default_timeout(15_000)
        self.contexts.append(ctx)
        page = ctx.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.js_errors = errors  # type: ignore[attr-defined]
        return page

    def close(self) -> None:
        for ctx in self.contexts:
            ctx.close()


@pytest.fixture(params=[DESKTOP, PHONE], ids=lambda s: s.name)
def size(request: pytest.FixtureRequest) -> Size:
    return request.param


@pytest.fixture
def as_role(browser: Browser, live_server: Server, size: Size) -> Iterator[RolePages]:
    pages = RolePages(browser, live_server.url, size)
    yield pages
    pages.close()


_AXE: list[str] = []


def _axe_source() -> str:
    if not _AXE:
        _AXE.append(AXE_JS.read_text(encoding="utf-8") + "\n;window.axe = axe; true;")
    return _AXE[0]


def axe_violations(page: Page, impacts: tuple[str, ...] = ("serious", "critical")) -> list[str]:
    """Runs axe-core (WCAG 2.x A and AA rules) on the page; one line per serious or critical violation."""
    if not AXE_JS.exists():
        pytest.fail(f"axe-core is missing at {AXE_JS}: run `make browser-deps`")
    # Evaluated through the DevTools protocol, which the pages' Content-Security-Policy (script-src 'self')
    # does not block, so the scan runs on the page exactly as served.
    page.evaluate(_axe_source())
    result = page.evaluate("""() => axe.run(document, {
        runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice']},
        resultTypes: ['violations']})""")
    lines = []
    for v in result["violations"]:
        if v["impact"] in impacts:
            targets = "; ".join(" ".join(n["target"]) for n in v["nodes"][:5])
            lines.append(f"{v['impact']} {v['id']}: {v['help']} ({len(v['nodes'])}x: {targets})")
    return lines
