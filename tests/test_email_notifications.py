"""The email channel end to end, into a real SMTP server (aiosmtpd) on a free port.

- A lifecycle: filed goes to the approvers' address, active (with who approved) to the
  requester's (from ``users``); each parses, has a text and an HTML part with
  the details and commands; a reason with ``<script>`` and Slack markup arrives
  as text (escaped in HTML, literal in text, shown literally by Chromium);
  no token in any message.
- STARTTLS with a self-signed certificate and AUTH with credentials from the
  environment; a server that refuses the first attempt (451) gets the retry
  with the same Message-ID.
"""

from __future__ import annotations

import email
import email.policy
import importlib.util
import ipaddress
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from temporalio.testing import WorkflowEnvironment

from tests.conftest import ROOT, free_port, running_stack
from tests.e2e_support import wait_until
from tests.webhook_receivers import polled

ORDERS = "postgres:orders/public.orders"  # one approval from db-owners
LOGS = "k8s:prod/logs"  # auto-approved
HOSTILE = "INC-7 <script>alert(1)</script> <!channel> *bold* & more"
SENDER = "jit-access@example.com"

_spec = importlib.util.spec_from_file_location("render_email_screenshot", ROOT / "docs/render_email_screenshot.py")
assert _spec and _spec.loader
screenshots = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(screenshots)


class Inbox:
    """What the SMTP server accepted; ``refuse_first``: answer 451 to that many DATA commands first."""

    def __init__(self, refuse_first: int = 0) -> None:
        self.messages: list[tuple[list[str], EmailMessage]] = []
        self.refused: list[EmailMessage] = []
        self.raw: list[bytes] = []
        self._refuse = refuse_first
        self._lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's name
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        with self._lock:
            if self._refuse > 0:
                self._refuse -= 1
                self.refused.append(parsed)
                return "451 4.3.0 try again later"
            self.raw.append(envelope.content)
            self.messages.append((list(envelope.rcpt_tos), parsed))
        return "250 OK"

    def to(self, address: str) -> list[EmailMessage]:
        with self._lock:
            return [m for rcpt, m in self.messages if address in rcpt]


@contextmanager
def smtp_server(inbox: Inbox, **options: Any) -> Iterator[int]:
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port, **options)
    controller.start()
    try:
        yield port
    finally:
        controller.stop()


def text_of(mail: EmailMessage) -> str:
    part = mail.get_body(("plain",))
    assert part is not None
    return part.get_content()


def html_of(mail: EmailMessage) -> str:
    part = mail.get_body(("html",))
    assert part is not None
    return part.get_content()


async def test_a_lifecycle_mails_approvers_then_the_requester_and_user_text_stays_text(
    dev_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    inbox = Inbox()
    with smtp_server(inbox) as port:
        config = tmp_path / "notifications.yaml"
        config.write_text(f"""
channels:
  mail: {{type: email, host: 127.0.0.1, port: {port}, starttls: false, sender: {SENDER}, timeout_s: 5}}
routes:
  - {{audience: approvers, to: [{{channel: mail, target: db-owners@example.com}}]}}
  - {{audience: requester, to: [mail]}}
users:
  - {{sub: alice, email: alice@example.com}}
""")
        async with running_stack(dev_env, tmp_path / "data", notifications_path=config) as stack:
            alice = stack.auth("alice", "engineers")
            body = {"resource": ORDERS, "action": "read", "duration": "PT15M", "reason": HOSTILE, "ticket": "T-1"}
            filed = await stack.http.post("/v1/requests", json=body, headers=alice)
            assert filed.status_code == 201, filed.text
            rid = filed.json()["id"]
            [to_approvers] = await wait_until(
                polled(lambda: inbox.to("db-owners@example.com")), timeout=60, what="the approvers' email"
            )
            assert inbox.to("alice@example.com") == []  # nothing for alice yet

            approved = await stack.http.post(
                f"/v1/requests/{rid}/approve", json={"comment": "ok"}, headers=stack.auth("bob", "db-owners")
            )
            assert approved.json()["status"] == "active", approved.text
            creds = await stack.http.get(f"/v1/requests/{rid}/credentials", headers=alice)
            token = creds.json()["access_token"]
            to_alice = await wait_until(
                polled(lambda: inbox.to("alice@example.com")), timeout=60, what="alice's active email"
            )

    # The approvers' message: who, what, how long, why, and the commands.
    mail = to_approvers
    assert mail["Subject"] == f"alice asks for read on {ORDERS} for 15m"
    assert (mail["From"], mail["To"]) == (SENDER, "db-owners@example.com")
    assert mail.is_multipart() and mail.get_content_type() == "multipart/alternative"
    text, html = text_of(mail), html_of(mail)
    for needle in (rid, ORDERS, "15m", "T-1", f"jit approve {rid[:8]}"):
        assert needle in text and needle in html
    # User text stays text: literal in the text part, escaped in the HTML part.
    assert HOSTILE in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &lt;!channel&gt; *bold* &amp; more" in html
    assert "<script" not in html and "<!channel>" not in html

    # The requester's: active (approved by bob a moment before), with how to use it; one Message-ID per event.
    [active] = to_alice
    assert active["Subject"].startswith(f"Active: read on {ORDERS} until ")
    assert f"jit token {rid[:8]}" in text_of(active) and f"jit token {rid[:8]}" in html_of(active)
    assert "bob" in text_of(active)  # approved by
    ids = [m["Message-ID"] for m in (mail, *to_alice)]
    assert len(set(ids)) == 2 and all(i.endswith("@example.com>") for i in ids)
    assert all(token not in raw.decode(errors="replace") for raw in inbox.raw)

    # A browser shows the reason as the text it is, and runs nothing.
    async with screenshots.chromium_page(html) as page:
        dialogs: list[str] = []
        page.on("dialog", lambda d: dialogs.append(d.message))
        reason = page.get_by_text(HOSTILE, exact=True)
        assert await reason.is_visible()
        assert await page.locator("script").count() == 0
        await page.screenshot(path=str(tmp_path / "email.png"), full_page=True)
    assert dialogs == []


@pytest.fixture
def tls_files(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "jit-test-smtp")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "smtp.crt", tmp_path / "smtp.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


async def test_starttls_and_login_and_a_refused_attempt_is_retried_with_the_same_message_id(
    dev_env: WorkflowEnvironment, tmp_path: Path, tls_files: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = tls_files
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    # The worker trusts the test's certificate as it would a private CA's bundle.
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    monkeypatch.setenv("JIT_TEST_SMTP_USER", "jit-mailer")
    monkeypatch.setenv("JIT_TEST_SMTP_PASSWORD", "smtp-pass-9f3e")
    logins: list[tuple[bytes, bool]] = []

    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (b"jit-mailer", b"smtp-pass-9f3e")
        logins.append((data.login if isinstance(data, LoginPassword) else b"?", ok))
        return AuthResult(success=ok)

    inbox = Inbox(refuse_first=1)
    options = dict(tls_context=server_tls, require_starttls=True, auth_required=True, authenticator=authenticator)
    with smtp_server(inbox, **options) as port:
        config = tmp_path / "notifications.yaml"
        config.write_text(f"""
channels:
  mail:
    type: email
    host: 127.0.0.1
    port: {port}
    sender: {SENDER}
    username_env: JIT_TEST_SMTP_USER
    password_env: JIT_TEST_SMTP_PASSWORD
    timeout_s: 5
routes:
  - {{audience: requester, to: [mail]}}
users:
  - {{sub: alice, email: alice@example.com}}
""")
        async with running_stack(dev_env, tmp_path / "data", notifications_path=config) as stack:
            alice = stack.auth("alice", "engineers")
            body = {"resource": LOGS, "action": "read", "duration": "PT15M", "reason": "INC-8: logs"}
            created = await stack.http.post("/v1/requests", json=body, headers=alice)
            assert created.json()["status"] == "active", created.text
            [active] = await wait_until(
                polled(lambda: inbox.to("alice@example.com")), timeout=60, what="the active email after a retry"
            )
            await stack.http.post(f"/v1/requests/{created.json()['id']}/revoke", json={"reason": "done"}, headers=alice)

    assert active["Subject"].startswith("Active: read on k8s:prod/logs")
    [refused] = inbox.refused
    assert refused["Message-ID"] == active["Message-ID"]  # the retry is recognisable as the same message
    assert logins and all(ok for _, ok in logins) and {login for login, _ in logins} == {b"jit-mailer"}
    assert all(b"smtp-pass-9f3e" not in raw for raw in inbox.raw)


def test_a_missing_credential_variable_is_named_and_its_value_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    from activities.channels.email import EmailError, EmailSender
    from activities.channels.webhook import WebhookError, WebhookSender
    from core.notify_config import EmailChannel, WebhookChannel

    monkeypatch.setenv("JIT_TEST_SMTP_USER", "mailer-login-7c1")
    monkeypatch.delenv("JIT_TEST_SMTP_PASSWORD", raising=False)
    channel = EmailChannel(
        type="email",
        host="smtp.example.com",
        sender=SENDER,
        username_env="JIT_TEST_SMTP_USER",
        password_env="JIT_TEST_SMTP_PASSWORD",
    )
    with pytest.raises(EmailError, match="JIT_TEST_SMTP_PASSWORD \\(password_env\\) is not set") as raised:
        EmailSender(channel)
    assert "mailer-login-7c1" not in str(raised.value)

    monkeypatch.setenv("JIT_TEST_SMTP_PASSWORD", "pw-in-clear")
    with pytest.raises(EmailError, match="starttls: false with credentials"):
        EmailSender(channel.model_copy(update={"starttls": False}))

    monkeypatch.delenv("JIT_TEST_WEBHOOK_SECRET", raising=False)
    hook = WebhookChannel(type="webhook", url="https://hooks.example.com/jit", secret_env="JIT_TEST_WEBHOOK_SECRET")
    with pytest.raises(WebhookError, match="JIT_TEST_WEBHOOK_SECRET \\(secret_env\\) is not set"):
        WebhookSender(hook)
