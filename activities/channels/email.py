"""The email channel: one message per notification over SMTP, text and HTML parts.

stdlib smtplib: the ``deliver`` activity is synchronous and runs in the
worker's thread pool, one connection per message (notifications are few).
STARTTLS is required unless the channel says ``starttls: false`` (a relay on
localhost); the server's certificate is checked against the system's CAs
(``SSL_CERT_FILE`` names another bundle). Credentials come from the
environment variables the channel names, read once when the worker starts: a
missing one stops the worker with the variable's name, never a value.

Any SMTP or network error raises, and the activity retries; every attempt of
one event carries the same Message-ID (activities/channels/email_render.py).
"""

from __future__ import annotations

import os
import smtplib
import ssl

from activities.channels.email_render import render
from core.notify_config import EmailChannel
from core.notify_models import Delivery, MessageRef


class EmailError(RuntimeError):
    pass


def _credentials(cfg: EmailChannel) -> tuple[str, str] | None:
    names = {"username_env": cfg.username_env, "password_env": cfg.password_env}
    if not any(names.values()):
        return None
    for field, name in names.items():
        if not name:
            raise EmailError(f"email channel: {field} is missing (give both username_env and password_env, or neither)")
        if not os.environ.get(name):
            raise EmailError(f"email channel: the environment variable {name} ({field}) is not set")
    assert cfg.username_env and cfg.password_env
    return os.environ[cfg.username_env], os.environ[cfg.password_env]


class EmailSender:
    def __init__(self, cfg: EmailChannel) -> None:
        self._cfg = cfg
        self._credentials = _credentials(cfg)
        if self._credentials and not cfg.starttls and cfg.host not in ("localhost", "127.0.0.1", "::1"):
            # A password in clear over the network: refuse at start-up rather than leak it.
            raise EmailError(f"email channel: starttls: false with credentials to {cfg.host}; only for localhost")

    def send(self, delivery: Delivery) -> MessageRef | None:
        to = delivery.route.target
        if not to:
            raise EmailError(f"no email address for {delivery.route.label} (add it under users: or as the target)")
        mail = render(delivery.event, sender=self._cfg.sender, to=to)
        cfg = self._cfg
        where = f"{cfg.host}:{cfg.port}"
        try:
            with smtplib.SMTP(cfg.host, cfg.port, timeout=cfg.timeout_s) as smtp:
                smtp.ehlo()
                if cfg.starttls:
                    smtp.starttls(context=ssl.create_default_context())
                    smtp.ehlo()
                if self._credentials:
                    smtp.login(*self._credentials)
                smtp.send_message(mail)
        except smtplib.SMTPAuthenticationError as e:
            raise EmailError(f"{where}: login refused ({e.smtp_code})") from None
        except smtplib.SMTPResponseException as e:
            raise EmailError(f"{where}: {e.smtp_code} {_text(e.smtp_error)}") from None
        except smtplib.SMTPException as e:
            raise EmailError(f"{where}: {type(e).__name__}: {e}") from None
        except (OSError, ssl.SSLError) as e:
            raise EmailError(f"{where}: {type(e).__name__}: {e}") from None
        return None


def _text(reply: bytes | str) -> str:
    text = reply.decode(errors="replace") if isinstance(reply, bytes) else reply
    return " ".join(text.split())[:200]
