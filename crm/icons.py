"""A handful of inline SVG icons, so pages need no colour-emoji font (phones without one showed boxes).

``{{ icon('lock') }}`` in a template; ``CHANNEL_ICONS`` for the timeline's channels. Each icon is a
24x24 stroke drawing in the text colour. Decorative by default (``aria-hidden``); ``icon(name, label)``
gives it a name for screen readers when the icon alone carries meaning.
"""

from __future__ import annotations

from markupsafe import Markup, escape

_SHAPES = {
    "person": '<circle cx="12" cy="8" r="4"/><path d="M4 21c0-4 4-6 8-6s8 2 8 6"/>',
    "envelope": '<rect x="3" y="5" width="18" height="14" rx="2"/><path d="M3 7l9 6 9-6"/>',
    "calendar": '<rect x="3" y="5" width="18" height="16" rx="2"/><path d="M3 10h18M8 3v4M16 3v4"/>',
    "phone": '<path d="M5 4h4l2 5-2.5 1.5a11 11 0 0 0 5 5L15 13l5 2v4a2 2 0 0 1-2 2A16 16 0 0 1 3 6a2 2 0 0 1 2-2z"/>',
    "box": '<path d="M3 7l9-4 9 4v10l-9 4-9-4zM3 7l9 4 9-4M12 11v10"/>',
    "clipboard": '<rect x="5" y="4" width="14" height="17" rx="2"/><path d="M9 4V3h6v1M9 10h6M9 14h6M9 18h4"/>',
    "check": '<circle cx="12" cy="12" r="9"/><path d="M8 12l3 3 5-6"/>',
    "lock": '<rect x="5" y="11" width="14" height="10" rx="2"/><path d="M8 11V7a4 4 0 0 1 8 0v4"/>',
    "warning": '<path d="M12 3l10 18H2zM12 10v5M12 18v.5"/>',
    "menu": '<path d="M4 6h16M4 12h16M4 18h16"/>',
    "dot": '<circle cx="12" cy="12" r="3"/>',
}

_ALIASES = {
    "visit": "person", "email": "envelope", "event": "calendar", "call_centre": "phone", "order": "box",
    "survey": "clipboard", "consent": "check", "user": "person",
}


def icon(name: str, label: str | None = None) -> Markup:
    """The inline SVG for ``name`` (an icon or a channel); an unknown name draws a dot."""
    shape = _SHAPES.get(_ALIASES.get(name, name), _SHAPES["dot"])
    if label:
        a11y = f'role="img" aria-label="{escape(label)}"'
        title = f"<title>{escape(label)}</title>"
    else:
        a11y, title = 'aria-hidden="true" focusable="false"', ""
    return Markup(  # noqa: S704  (fixed shapes; the label is escaped)
        f'<svg class="svg-icon icon-{escape(name)}" viewBox="0 0 24 24" width="1.2em" height="1.2em" fill="none" '
        f'stroke="currentColor" stroke-width="2" stroke-linecap="round" stroke-linejoin="round" {a11y}>'
        f"{title}{shape}</svg>"
    )


CHANNEL_ICONS = {c: icon(c) for c in ("visit", "email", "event", "call_centre", "order", "survey", "consent")}


def register_icons(app: object) -> None:
    """The ``icon`` Jinja global."""
    app.jinja_env.globals["icon"] = icon  # type: ignore[attr-defined]
