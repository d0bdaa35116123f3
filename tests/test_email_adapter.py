"""The email-sending adapter: the same contract against the file outbox and a real SMTP server."""

from __future__ import annotations

import socket
from email import policy
from email.parser import BytesParser
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from crm.integrations.email import (
    EmailError,
    EmailMessage,
    FileOutboxSender,
    SmtpSender,
    get_sender,
)
from crm.integrations.email.smtp import SmtpSettings

FROM = "Pharma CRM <no-reply@pharma.example>"


class Sink:
    """An SMTP server on loopback that keeps what it receives."""

    def __init__(self) -> None:
        self.messages: list[bytes] = []
        self.envelopes: list[tuple[str, list[str]]] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802  (aiosmtpd's hook name)
        self.messages.append(envelope.original_content or envelope.content)
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def smtp_server():
    sink = Sink()
    controller = Controller(sink, hostname="127.0.0.1", port=_free_port())
    controller.start()
    try:
        yield sink, controller
    finally:
        controller.stop()


@pytest.fixture(params=["file", "smtp"])
def backend(request, tmp_path):
    """(sender, read) where read() returns the delivered messages, parsed."""
    if request.param == "file":
        sender = FileOutboxSender(tmp_path / "outbox", FROM)

        def read():
            return [BytesParser(policy=policy.default).parsebytes(p.read_bytes())
                    for p in sorted((tmp_path / "outbox").glob("*.eml"))]

        yield sender, read
    else:
        sink, controller = request.getfixturevalue("smtp_server")
        sender = SmtpSender(f"smtp://127.0.0.1:{controller.port}", FROM, timeout=10)

        def read():
            return [BytesParser(policy=policy.default).parsebytes(m) for m in sink.messages]

        yield sender, read


def test_contract_text_html_headers_unicode(backend):
    sender, read = backend
    message_id = sender.send(EmailMessage(
        to="dr.müller@klinik.example", subject="Bestätigung Ihrer Einwilligung ✓",
        text="Hallo, bitte bestätigen: https://crm.example/consent/confirm/abc", html="<p>Hallo</p>",
        headers={"List-Unsubscribe": "<https://crm.example/consent/unsubscribe/t>",
                 "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}))
    [msg] = read()
    assert msg["Subject"] == "Bestätigung Ihrer Einwilligung ✓"
    assert msg["To"] == "dr.müller@klinik.example" and msg["From"] == FROM
    assert msg["Message-ID"] == message_id
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "bitte bestätigen" in msg.get_body(preferencelist=("plain",)).get_content()
    assert msg.get_body(preferencelist=("html",)).get_content().strip() == "<p>Hallo</p>"


def test_contract_text_only_and_several_messages(backend):
    sender, read = backend
    for n in range(3):
        sender.send(EmailMessage(to=f"hcp{n}@clinic.example", subject=f"n{n}", text="plain only"))
    msgs = read()
    assert sorted(m["Subject"] for m in msgs) == ["n0", "n1", "n2"]
    assert all(not m.is_multipart() for m in msgs)


def test_contract_header_injection_is_refused(backend):
    sender, read = backend
    with pytest.raises(EmailError):
        sender.send(EmailMessage(to="a@b.example", subject="hi\r\nBcc: victim@evil.example", text="x"))
    with pytest.raises(EmailError):
        sender.send(EmailMessage(to="a@b.example", subject="hi", text="x", headers={"From": "ceo@evil.example"}))
    assert read() == []


def test_outbox_writes_atomically_leaving_no_temp_files(tmp_path):
    sender = FileOutboxSender(tmp_path / "out", FROM)
    sender.send(EmailMessage(to="a@b.example", subject="s", text="t"))
    names = [p.name for p in (tmp_path / "out").iterdir()]
    assert len(names) == 1 and names[0].endswith(".eml") and not names[0].startswith(".tmp-")


def test_smtp_envelope_and_failure(smtp_server):
    sink, controller = smtp_server
    SmtpSender(f"smtp://127.0.0.1:{controller.port}", FROM).send(
        EmailMessage(to="x@clinic.example", subject="s", text="t"))
    assert sink.envelopes == [("no-reply@pharma.example", ["x@clinic.example"])]
    closed = SmtpSender(f"smtp://127.0.0.1:{_free_port()}", FROM, timeout=5)
    with pytest.raises(EmailError, match="failed"):
        closed.send(EmailMessage(to="x@clinic.example", subject="s", text="t"))


def test_smtp_url_parsing():
    s = SmtpSettings.from_url("smtp://us%40er:p%3Ass@mail.example:587?starttls=1")
    assert (s.host, s.port, s.username, s.password, s.starttls, s.ssl) == (
        "mail.example", 587, "us@er", "p:ss", True, False)
    s = SmtpSettings.from_url("smtps://mail.example")
    assert (s.port, s.ssl, s.starttls) == (465, True, False)
    for bad in ("http://mail.example", "smtp://", "smtp://host:notaport"):
        with pytest.raises(EmailError):
            SmtpSettings.from_url(bad)


def test_registry_chooses_the_backend(tmp_path):
    from tests.conftest import database_url, make_app

    app = make_app(database_url(), CRM_OUTBOX_DIR=str(tmp_path / "o"))
    assert isinstance(get_sender(app), FileOutboxSender)
    assert get_sender(app) is get_sender(app)
    app = make_app(database_url(), CRM_EMAIL_BACKEND="smtp", CRM_SMTP_URL="smtp://127.0.0.1:2525")
    assert isinstance(get_sender(app), SmtpSender)
    app = make_app(database_url(), CRM_EMAIL_BACKEND="pigeon")
    with pytest.raises(EmailError):
        get_sender(app)
    assert Path(tmp_path).exists()
