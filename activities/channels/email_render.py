"""An email for one notification: a text part and an HTML part, from the channel-neutral Message.

No network here (activities/channels/email.py sends), so the screenshot script
(docs/render_email_screenshot.py) renders exactly what is sent. Every string
in the HTML part passes through :func:`html.escape`: a reason with ``<script>``
or Slack markup shows as the text it is.
"""

from __future__ import annotations

import hashlib
import re
from email.message import EmailMessage
from email.utils import format_datetime
from html import escape

from activities.channels.message import Message, as_text, build
from core.notify_models import NotificationEvent

_NOT_ATOM = re.compile(r"[^A-Za-z0-9._-]")


def _domain(sender: str) -> str:
    domain = sender.rpartition("@")[2].strip("> ")
    return _NOT_ATOM.sub("", domain) or "jit-access.invalid"


def message_id(event_id: str, sender: str) -> str:
    """The same for every attempt of one event: a retry is recognisable (and deduplicated) as such."""
    local = _NOT_ATOM.sub(".", event_id)
    # The id itself, readable, with a digest so that two ids that map to the same text stay distinct.
    digest = hashlib.sha256(event_id.encode()).hexdigest()[:12]
    return f"<{local}.{digest}@{_domain(sender)}>"


def thread_id(request_id: str, sender: str) -> str:
    """One per request: mail clients thread a request's messages under it."""
    return f"<{_NOT_ATOM.sub('.', request_id)}@{_domain(sender)}>"


def _subject(title: str) -> str:
    # A header is one line: a reason's line breaks must not start new headers.
    return " ".join(title.split())


def render(event: NotificationEvent, *, sender: str, to: str) -> EmailMessage:
    msg = build(event)
    mail = EmailMessage()
    mail["Subject"] = _subject(msg.title)
    mail["From"] = sender
    mail["To"] = to
    mail["Date"] = format_datetime(event.at)
    mail["Message-ID"] = message_id(event.id, sender)
    mail["References"] = thread_id(event.request_id, sender)
    mail["X-Jit-Event-Id"] = _NOT_ATOM.sub(".", event.id)
    mail.set_content(as_text(msg) + "\n\n-- \njit-access\n")
    mail.add_alternative(as_html(msg), subtype="html")
    return mail


_STYLE = {
    "body": "margin:0;padding:24px;background:#f4f5f7;font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;"
    "color:#1d2330",
    "card": "max-width:640px;margin:0 auto;background:#fff;border:1px solid #dfe1e6;border-radius:8px;padding:24px",
    "brand": "font-size:12px;letter-spacing:.08em;text-transform:uppercase;color:#6b778c;margin:0 0 8px",
    "title": "font-size:20px;line-height:1.35;margin:0 0 16px",
    "label": "padding:6px 16px 6px 0;color:#6b778c;vertical-align:top;white-space:nowrap",
    "value": "padding:6px 0;vertical-align:top;white-space:pre-wrap;word-break:break-word",
    "pre": "background:#1d2330;color:#e6e8eb;padding:12px 16px;border-radius:6px;font-size:13px;"
    "font-family:SFMono-Regular,Menlo,Consolas,monospace;white-space:pre-wrap;margin:16px 0 0",
    "button": "display:inline-block;margin-top:16px;padding:10px 16px;background:#0b5cff;color:#fff;"
    "text-decoration:none;border-radius:6px",
    "foot": "max-width:640px;margin:12px auto 0;font-size:12px;color:#6b778c;text-align:center",
}


def as_html(msg: Message) -> str:
    e = escape
    rows = "".join(
        f'<tr><td style="{_STYLE["label"]}">{e(label)}</td><td style="{_STYLE["value"]}">{e(value)}</td></tr>'
        for label, value in msg.facts
    )
    parts = [
        "<!DOCTYPE html>",
        '<html><head><meta charset="utf-8">',
        f"<title>{e(msg.title)}</title></head>",
        f'<body style="{_STYLE["body"]}"><div style="{_STYLE["card"]}">',
        f'<p style="{_STYLE["brand"]}">jit-access</p>',
        f'<h1 style="{_STYLE["title"]}">{e(msg.title)}</h1>',
        f'<table role="presentation" style="border-collapse:collapse;font-size:14px">{rows}</table>',
    ]
    if msg.commands:
        commands = "\n".join(f"$ {e(c)}" for c in msg.commands)
        parts.append(f'<pre style="{_STYLE["pre"]}">{commands}</pre>')
    if msg.url and msg.url.startswith(("https://", "http://")):
        parts.append(f'<a href="{e(msg.url, quote=True)}" style="{_STYLE["button"]}">Open the request</a>')
    parts += [
        "</div>",
        f'<p style="{_STYLE["foot"]}">Sent by jit-access. Use the commands above or the link; '
        "replies to this address are not read.</p>",
        "</body></html>",
    ]
    return "\n".join(parts)
