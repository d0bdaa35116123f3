"""Rendering a template for one HCP, safely.

Templates are written by marketers and filled with HCP master data, which comes from imports and forms:
both are untrusted. Jinja runs in a sandbox (no attribute access to Python internals), the HTML part is
autoescaped (an HCP field holding ``<script>`` comes out as text), the context holds plain strings only,
and an unknown field is an error when the template is saved rather than a blank in a sent mail.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any

from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import SandboxedEnvironment

# What a template may use as ``{{ hcp.<field> }}``.
HCP_FIELDS = ("first_name", "last_name", "full_name", "profession", "specialty", "city", "state", "country")
SAMPLE_HCP = {"first_name": "Jane", "last_name": "Doe", "full_name": "Jane Doe", "profession": "gp",
              "specialty": "General Practice", "city": "Springfield", "state": "IL", "country": "US"}
SAMPLE_UNSUBSCRIBE_URL = "https://crm.example/consent/unsubscribe/preview"

_HTML = SandboxedEnvironment(autoescape=True, undefined=StrictUndefined)
_TEXT = SandboxedEnvironment(autoescape=False, undefined=StrictUndefined)
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class Rendered:
    subject: str
    html: str
    text: str


def hcp_context(hcp: Any) -> dict[str, str]:
    """The HCP's fields as plain strings (never the ORM object: the sandbox then has nothing to reach)."""
    return {name: str(getattr(hcp, name, None) or "") for name in HCP_FIELDS}


@functools.cache
def _footer() -> Any:
    """The unsubscribe footer, compiled once per process (not once per recipient)."""
    return _HTML.from_string('<p>You receive this email because you agreed to hear from us. '
                             '<a href="{{ url }}">Unsubscribe</a></p>')


class CompiledTemplate:
    """A template version compiled once per send and rendered per recipient."""

    def __init__(self, subject: str, html_body: str, text_body: str) -> None:
        self.subject = _TEXT.from_string(subject)
        self.html = _HTML.from_string(html_body)
        self.text = _TEXT.from_string(text_body)
        self.html_has_link = "unsubscribe_url" in html_body
        self.text_has_link = "unsubscribe_url" in text_body

    def render(self, hcp: dict[str, str], unsubscribe_url: str) -> Rendered:
        context = {"hcp": hcp, "unsubscribe_url": unsubscribe_url}
        # A header is one line: the subject's line breaks (from a field or the template) become spaces.
        subject = _SPACE.sub(" ", self.subject.render(context)).strip()
        html = self.html.render(context)
        text = self.text.render(context)
        # One click from any email: a template that does not place the link itself gets a footer.
        if not self.html_has_link:
            html += _footer().render(url=unsubscribe_url)
        if not self.text_has_link:
            text += f"\n\n--\nUnsubscribe with one click: {unsubscribe_url}\n"
        return Rendered(subject, html, text)


def template_errors(subject: str, html_body: str, text_body: str) -> dict[str, list[str]]:
    """Syntax errors and unknown fields per part, found by rendering for a sample HCP."""
    errors: dict[str, list[str]] = {}
    context = {"hcp": SAMPLE_HCP, "unsubscribe_url": SAMPLE_UNSUBSCRIBE_URL}
    for name, source, env in (("subject", subject, _TEXT), ("html_body", html_body, _HTML),
                              ("text_body", text_body, _TEXT)):
        try:
            env.from_string(source).render(context)
        except TemplateError as exc:
            errors[name] = [f"{exc.message or exc.__class__.__name__}; the fields are "
                            + ", ".join(f"hcp.{f}" for f in HCP_FIELDS) + " and unsubscribe_url"]
    return errors


def preview(subject: str, html_body: str, text_body: str) -> Rendered:
    """The template rendered for the sample HCP (the approval page shows this)."""
    return CompiledTemplate(subject, html_body, text_body).render(SAMPLE_HCP, SAMPLE_UNSUBSCRIBE_URL)
