"""``List-Unsubscribe`` as RFC 2369 / RFC 8058 write it, in the bytes that leave: ``<https://...>, <mailto:...>``,
never RFC 2047 encoded words (which no mail client reads as a URI), through both mail backends."""

from __future__ import annotations

import re
import socket
from email import policy
from email.parser import BytesParser

import pytest
from aiosmtpd.controller import Controller

from crm.integrations.email import EmailError, EmailMessage, FileOutboxSender, SmtpSender, build_mime

FROM = "Pharma CRM <no-reply@pharma.example>"
URL = "https://crm.pharma.example/consent/unsubscribe/" + "A" * 43 + "." + "B" * 24
VALUE = f"<{URL}>, <mailto:unsubscribe@pharma.example?subject=unsubscribe>"
HEADERS = {"List-Unsubscribe": VALUE, "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}


def raw_header(raw: bytes, name: str) -> str:
    """The header as written in the message bytes, unfolded (CRLF + whitespace joined, nothing decoded)."""
    head = raw.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0].decode("utf-8")
    unfolded = re.sub(r"\r?\n[ \t]", " ", head)
    values = [line.split(":", 1)[1].strip() for line in unfolded.splitlines()
              if line.lower().startswith(name.lower() + ":")]
    assert len(values) == 1, values
    return values[0]


def check(raw: bytes) -> None:
    value = raw_header(raw, "List-Unsubscribe")
    assert "=?" not in value  # no encoded word
    assert value == VALUE
    assert re.fullmatch(r"<https://[^<>\s]+>, <mailto:[^<>\s]+>", value)
    assert raw_header(raw, "List-Unsubscribe-Post") == "List-Unsubscribe=One-Click"
    parsed = BytesParser(policy=policy.default).parsebytes(raw)
    assert parsed["List-Unsubscribe"] == VALUE


@pytest.mark.parametrize("to", ["hcp@clinic.example", "dr.müller@klinik.example"])
def test_build_mime_writes_the_uri_list_as_given(to):
    check(build_mime(EmailMessage(to=to, subject="News ✓", text="x", headers=HEADERS), FROM).as_bytes())


def test_file_outbox_bytes(tmp_path):
    FileOutboxSender(tmp_path, FROM).send(EmailMessage(to="hcp@clinic.example", subject="s", text="x",
                                                       headers=HEADERS))
    [path] = tmp_path.glob("*.eml")
    check(path.read_bytes())


def test_smtp_bytes():
    received: list[bytes] = []

    class Sink:
        async def handle_DATA(self, server, session, envelope):  # noqa: N802  (aiosmtpd's hook name)
            received.append(envelope.original_content or envelope.content)
            return "250 OK"

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    controller = Controller(Sink(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        SmtpSender(f"smtp://127.0.0.1:{port}", FROM, timeout=10).send(
            EmailMessage(to="hcp@clinic.example", subject="s", text="x", headers=HEADERS))
    finally:
        controller.stop()
    [raw] = received
    check(raw)


def test_very_many_uris_fold_between_uris_only():
    many = ", ".join(f"<https://crm.pharma.example/u/{n}/{'x' * 100}>" for n in range(12))
    raw = build_mime(EmailMessage(to="a@b.example", subject="s", text="x", headers={"List-Unsubscribe": many}),
                     FROM).as_bytes()
    head = raw.split(b"\r\n\r\n", 1)[0].decode()
    assert all(len(line) <= 998 for line in head.split("\r\n"))
    assert raw_header(raw, "List-Unsubscribe") == many


@pytest.mark.parametrize("bad", ["<https://crm.example/u/é>", "<https://crm.example/u>\r\nBcc: x@evil.example"])
def test_non_ascii_or_injected_values_are_refused(bad):
    with pytest.raises(EmailError):
        build_mime(EmailMessage(to="a@b.example", subject="s", text="x", headers={"List-Unsubscribe": bad}), FROM)


def test_the_mailto_is_configurable_and_checked():
    from crm.config import ConfigError, Settings

    default = Settings.from_env({"CRM_MAIL_FROM": "Acme <news@acme.example>", "CRM_SECRET_KEY": "k"})
    assert default.flask_config()["CRM_UNSUBSCRIBE_MAILTO"] == "unsubscribe@acme.example"
    chosen = Settings.from_env({"CRM_UNSUBSCRIBE_MAILTO": "optout@acme.example", "CRM_SECRET_KEY": "k"})
    assert chosen.flask_config()["CRM_UNSUBSCRIBE_MAILTO"] == "optout@acme.example"
    for bad in ("not an address", "a@b@c", "<x@acme.example>", "é@acme.example"):
        with pytest.raises(ConfigError):
            Settings.from_env({"CRM_UNSUBSCRIBE_MAILTO": bad, "CRM_SECRET_KEY": "k"})
