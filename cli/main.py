"""``jit``: a thin command-line client of the jit-access REST API (``jit --help``).

Every command but ``dev-token`` calls the API; output is for people unless
``--json`` asks for the API's answer as is. Errors are one ``jit: ...`` line
on stderr: exit 1 when the API refused, 2 when it was never reached or the
command line was wrong.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

import click

from cli import policy_commands
from cli.audit import audit
from cli.client import Api, CliError, describe, describe_preview, echo_json, parse_time, status_line, table, when
from cli.psql import psql_command
from core.dev_identity import mint_dev_token
from core.durations import DurationError, parse_duration
from core.models import Status
from core.settings import Settings

AS_HINT = "--as works only against a server running with JIT_DEV_IDENTITY=1 on the same JIT_DATA_DIR"


class Duration(click.ParamType):
    """Checked here so a typo is a usage error; sent to the API as typed."""

    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        try:
            parse_duration(str(value))
        except DurationError as e:
            self.fail(str(e), param, ctx)
        return str(value).strip()


class Timestamp(click.ParamType):
    """ISO 8601; without a zone it means local time."""

    name = "timestamp"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        try:
            moment = datetime.fromisoformat(str(value))
        except ValueError:
            self.fail(f"{value!r} is not an ISO 8601 time like 2026-01-01T09:00:00Z", param, ctx)
        return (moment if moment.tzinfo else moment.astimezone()).isoformat()


DURATION, TIMESTAMP = Duration(), Timestamp()


@dataclass
class Session:
    server: str
    token: str | None
    as_user: str | None
    as_groups: tuple[str, ...]
    json: bool = False
    as_mfa: bool = False

    @property
    def api(self) -> Api:
        return Api(self.server, self._identity, AS_HINT if self.as_user else None)

    def _identity(self) -> str:
        if self.as_user:
            settings = Settings()
            if not settings.dev_identity_key_path.exists():
                raise CliError(f"no dev identity key at {settings.dev_identity_key_path}: {AS_HINT}", 2)
            amr = ["pwd", "mfa"] if self.as_mfa else None
            return mint_dev_token(settings, self.as_user, list(self.as_groups), timedelta(minutes=5), amr=amr)
        if self.token:
            return self.token
        raise CliError("no identity: set JIT_TOKEN, or pass --token TOKEN (or --as USER against a dev server)", 2)

    def show(self, view: dict[str, Any]) -> None:
        if self.json:
            echo_json(view)
        else:
            click.echo(status_line(view))


def _json_flag(ctx: click.Context, _: click.Parameter, value: bool) -> None:
    if value:
        ctx.find_object(Session).json = True  # type: ignore[union-attr]


def json_option(f: Any) -> Any:
    """``--json`` after the command too: ``jit ls --json`` as well as ``jit --json ls``."""
    return click.option(
        "--json", is_flag=True, expose_value=False, callback=_json_flag, help="Print the API's JSON answer."
    )(f)


def _server(_: click.Context, __: click.Parameter, value: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise click.BadParameter(f"{value!r} is not an http:// or https:// URL")
    return value.rstrip("/")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--server",
    envvar="JIT_SERVER",
    default="http://localhost:8000",
    show_default=True,
    callback=_server,
    help="The API's base URL [env: JIT_SERVER].",
)
@click.option("--token", envvar="JIT_TOKEN", help="Your identity token [env: JIT_TOKEN].")
@click.option("--as", "as_user", metavar="USER", help="Dev only: call as USER with a dev token minted on the fly.")
@click.option("--group", "as_groups", multiple=True, metavar="GROUP", help="A group of the --as user (repeatable).")
@click.option("--mfa", "as_mfa", is_flag=True, help="Dev only: the --as user signed in with a second factor.")
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON answers.")
@click.pass_context
def cli(
    ctx: click.Context,
    server: str,
    token: str | None,
    as_user: str | None,
    as_groups: tuple[str, ...],
    as_mfa: bool,
    as_json: bool,
) -> None:
    """Just-in-time access: ask for it, get it approved, get a token, lose it on time.

    \b
    export JIT_TOKEN=$(jit dev-token alice --group engineers)
    jit request postgres:orders/public.orders --action read --for 15m --reason INC-1
    jit --as bob --group db-owners --mfa approve ID
    jit token ID

    --as USER [--group G ...] mints a dev identity token on the fly with the
    key in JIT_DATA_DIR: it works only against a server running with
    JIT_DEV_IDENTITY=1 on that same data dir.
    """
    if (as_groups or as_mfa) and not as_user:
        raise click.UsageError("--group and --mfa go with --as USER (dev-token takes its own)")
    ctx.obj = Session(server, token, as_user, as_groups, as_json, as_mfa)


@cli.command("dev-token")
@click.argument("user")
@click.option("--group", "groups", multiple=True, metavar="GROUP", help="A group of USER (repeatable).")
@click.option("--ttl", type=DURATION, default="12h", show_default=True, help="How long the token is valid.")
@click.option("--mfa", is_flag=True, help='USER signed in with a second factor (amr: ["pwd", "mfa"]).')
def dev_token(user: str, groups: tuple[str, ...], ttl: str, mfa: bool) -> None:
    """Print a dev identity token for USER; needs no server.

    Signed with the key in JIT_DATA_DIR (default .data): only a server running
    with JIT_DEV_IDENTITY=1 on the same data dir accepts it. The policies may
    ask for --mfa (approving in production, breaking glass).
    """
    settings = Settings()
    amr = ["pwd", "mfa"] if mfa else None
    click.echo(mint_dev_token(settings, user, list(groups), timedelta(seconds=parse_duration(ttl)), amr=amr))


@cli.command()
@click.argument("resource")
@click.option("--action", required=True, help="What to do on RESOURCE, e.g. read.")
@click.option("--for", "duration", type=DURATION, required=True, help="How long: 15m, 1h30m, PT15M or seconds.")
@click.option("--reason", required=True, help="Why, for the approvers and the audit trail.")
@click.option("--ticket", help="A ticket reference, e.g. INC-1.")
@click.option("--start-at", type=TIMESTAMP, help="Start later (ISO 8601; local time without a zone).")
@click.option("--idempotency-key", metavar="KEY", help="Retrying with the same KEY files the request once.")
@click.option("--break-glass", is_flag=True, help="An emergency: access at once, reviewed afterwards (if permitted).")
@click.option("--dry-run", is_flag=True, help="Show what the policies would decide, and why; file nothing.")
@json_option
@click.pass_obj
def request(
    s: Session,
    resource: str,
    action: str,
    duration: str,
    reason: str,
    ticket: str | None,
    start_at: str | None,
    idempotency_key: str | None,
    break_glass: bool,
    dry_run: bool,
) -> None:
    """Ask for access to RESOURCE."""
    body: dict[str, Any] = {"resource": resource, "action": action, "duration": duration, "reason": reason}
    if ticket:
        body["ticket"] = ticket
    if start_at:
        body["start_at"] = start_at
    if break_glass:
        body["break_glass"] = True
    if dry_run:
        preview = s.api.call("POST", "/v1/requests/preview", body=body)
        if s.json:
            echo_json(preview)
        else:
            describe_preview(preview)
        return
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
    s.show(s.api.call("POST", "/v1/requests", body=body, headers=headers))


def _act(s: Session, request_id: str, verb: str, body: dict[str, Any]) -> None:
    path = f"/v1/requests/{quote(request_id, safe='')}/{verb}"
    s.show(s.api.call("POST", path, body={k: v for k, v in body.items() if v is not None}))


@cli.command()
@click.argument("request_id", metavar="ID")
@click.option("--comment", help="A note for the record.")
@json_option
@click.pass_obj
def approve(s: Session, request_id: str, comment: str | None) -> None:
    """Approve a pending request (not your own)."""
    _act(s, request_id, "approve", {"comment": comment})


@cli.command()
@click.argument("request_id", metavar="ID")
@click.option("--reason", required=True)
@json_option
@click.pass_obj
def deny(s: Session, request_id: str, reason: str) -> None:
    """Deny a pending request."""
    _act(s, request_id, "deny", {"reason": reason})


@cli.command()
@click.argument("request_id", metavar="ID")
@click.option("--reason")
@json_option
@click.pass_obj
def cancel(s: Session, request_id: str, reason: str | None) -> None:
    """Withdraw your own pending or scheduled request."""
    _act(s, request_id, "cancel", {"reason": reason})


@cli.command()
@click.argument("request_id", metavar="ID")
@click.option("--reason", required=True)
@json_option
@click.pass_obj
def revoke(s: Session, request_id: str, reason: str) -> None:
    """End active access now (yours, or any as an admin)."""
    _act(s, request_id, "revoke", {"reason": reason})


@cli.command()
@click.argument("request_id", metavar="ID")
@click.option("--for", "duration", type=DURATION, required=True, help="How much longer: 30m, PT30M or seconds.")
@click.option("--reason", required=True)
@json_option
@click.pass_obj
def extend(s: Session, request_id: str, duration: str, reason: str) -> None:
    """Keep your active access longer (within the resource's maximum)."""
    _act(s, request_id, "extend", {"duration": duration, "reason": reason})


@cli.command("ls")
@click.option("--status", type=click.Choice([s.value for s in Status]))
@click.option("--mine", is_flag=True, help="Only requests you filed.")
@click.option("--to-approve", is_flag=True, help="Only pending requests you may approve.")
@click.option("--requester", metavar="USER")
@click.option("--resource")
@click.option("--all", "follow", is_flag=True, help="Every page, not just the first 50.")
@json_option
@click.pass_obj
def ls(
    s: Session,
    status: str | None,
    mine: bool,
    to_approve: bool,
    requester: str | None,
    resource: str | None,
    follow: bool,
) -> None:
    """List the requests you can see, newest first."""
    params = {k: v for k, v in {"status": status, "requester": requester, "resource": resource}.items() if v}
    params |= {k: "true" for k, on in {"mine": mine, "to_approve": to_approve}.items() if on}
    page = s.api.call("GET", "/v1/requests", params=params)
    items = list(page["items"])
    while follow and page.get("next_page_token"):
        page = s.api.call("GET", "/v1/requests", params={**params, "page_token": page["next_page_token"]})
        items += page["items"]
    items.sort(key=lambda i: parse_time(i["created_at"]), reverse=True)
    more = page.get("next_page_token")
    if s.json:
        echo_json({"items": items, "next_page_token": more})
        return
    if not items:
        click.echo("no requests")
        return
    headers = ["ID", "STATUS", "REQUESTER", "RESOURCE", "ACTION", "CREATED", "UNTIL", "APPROVED BY"]
    table(
        headers,
        [
            [
                i["id"],
                i["status"] or "?",
                i["requester"] or "?",
                i["resource"] or "?",
                i["action"] or "?",
                when(i["created_at"], short=True),
                when(i.get("ended_at") or i.get("expires_at"), short=True),  # when access ended or will
                ", ".join(i["approvers"]) or "-",
            ]
            for i in items
        ],
    )
    if more:
        click.echo("(more requests: jit ls --all)", err=True)


@cli.command()
@click.argument("request_id", metavar="ID")
@json_option
@click.pass_obj
def show(s: Session, request_id: str) -> None:
    """Show one request in full."""
    view = s.api.call("GET", f"/v1/requests/{quote(request_id, safe='')}")
    if s.json:
        echo_json(view)
    else:
        describe(view)


@cli.command()
@click.argument("request_id", metavar="ID")
@json_option
@click.option("--psql", is_flag=True, help="Print a ready psql command for the grant's database role instead.")
@click.pass_obj
def token(s: Session, request_id: str, psql: bool) -> None:
    """Print the access token of your active request: $(jit token ID)."""
    credentials = s.api.call("GET", f"/v1/requests/{quote(request_id, safe='')}/credentials")
    if psql:
        click.echo(psql_command(credentials))
    elif s.json:
        echo_json(credentials)
    else:
        click.echo(credentials["access_token"])


cli.add_command(audit)  # jit audit, jit audit verify: cli/audit.py
policy_commands.register(cli, _act)  # jit acknowledge, reviews, catalog, policy check: cli/policy_commands.py


def main() -> None:
    code = 0
    try:
        cli(prog_name="jit")
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 0 if e.code is None else 1
    except Exception as e:  # never a traceback: one line, like every other failure
        CliError(f"unexpected error: {type(e).__name__}: {e}").show()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    # Leave without the interpreter's shutdown: where a command used a Temporal client
    # (jit audit verify reads the anchors), the SDK's native threads can abort it
    # (SIGABRT) and turn a clean exit code into -6. Nothing is left to clean up here.
    os._exit(code)


if __name__ == "__main__":
    main()
