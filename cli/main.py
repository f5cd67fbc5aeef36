"""``jit``: a thin command-line client of the jit-access REST API (``jit --help``).

Every command calls the API but ``config``, ``keys``, ``policy check`` and ``audit verify``;
output is for people unless ``--json`` asks for the API's answer as is. Errors
are one ``jit: ...`` line on stderr, with the exit codes of cli/client.py
``EXIT_CODES``. It needs no file of the server: dev tokens come from the API
(``POST /v1/dev/token``), the server's URL from cli/config.py.
"""

from __future__ import annotations

import os
import sys
from typing import Any
from urllib.parse import quote

import click

from cli import config, policy_commands
from cli.audit import audit
from cli.client import (
    EXIT_CODES,
    FAILED,
    CliError,
    describe,
    describe_preview,
    echo_json,
    parse_time,
    table,
    when,
)
from cli.keys import keys
from cli.psql import psql_command
from cli.session import DURATION, TIMESTAMP, Session, json_option
from cli.wait import timeout_seconds, wait_for_extension, wait_for_request, wait_options
from core.models import Status


def _exit_codes() -> str:
    rows = "\n".join(f"  {code:>3}  {text}" for code, text in EXIT_CODES.items())
    return f"\b\nExit codes:\n{rows}"


@click.group(context_settings={"help_option_names": ["-h", "--help"]}, epilog=_exit_codes())
@click.option(
    "--server",
    metavar="URL",
    help="The API's base URL; else JIT_SERVER, else `server` in the config file (jit config), "
    f"else {config.DEFAULT_SERVER}.",
)
@click.option("--token", envvar="JIT_TOKEN", help="Your identity token [env: JIT_TOKEN].")
@click.option("--as", "as_user", metavar="USER", help="Dev only: call as USER with a dev token from the server.")
@click.option("--group", "as_groups", multiple=True, metavar="GROUP", help="A group of the --as user (repeatable).")
@click.option("--mfa", "as_mfa", is_flag=True, help="Dev only: the --as user signed in with a second factor.")
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON answers.")
@click.pass_context
def cli(
    ctx: click.Context,
    server: str | None,
    token: str | None,
    as_user: str | None,
    as_groups: tuple[str, ...],
    as_mfa: bool,
    as_json: bool,
) -> None:
    """Just-in-time access: ask for it, get it approved, get a token, lose it on time.

    \b
    jit config set server https://jit.example.com   once; or JIT_SERVER, or --server
    export JIT_TOKEN=$(jit dev-token alice --group engineers)
    jit request postgres:orders/public.orders --action read --for 15m --reason INC-1
    jit --as bob --group db-owners --mfa approve 3f0c
    jit token 3f0c

    An ID may be a unique prefix of one (at least 4 characters), as git
    takes commit prefixes.

    --as USER [--group G ...] asks the server for a dev identity token for
    this one command (as jit dev-token does): it works only against a server
    running with JIT_DEV_IDENTITY=1 (make run).
    """
    if (as_groups or as_mfa) and not as_user:
        raise click.UsageError("--group and --mfa go with --as USER (dev-token takes its own)")
    ctx.obj = Session(server, token, as_user, as_groups, as_json, as_mfa)


@cli.command("dev-token")
@click.argument("user")
@click.option("--group", "groups", multiple=True, metavar="GROUP", help="A group of USER (repeatable).")
@click.option("--ttl", type=DURATION, default="12h", show_default=True, help="How long the token is valid (<= 24h).")
@click.option("--mfa", is_flag=True, help='USER signed in with a second factor (amr: ["pwd", "mfa"]).')
@click.pass_obj
def dev_token(s: Session, user: str, groups: tuple[str, ...], ttl: str, mfa: bool) -> None:
    """Print a dev identity token for USER, from the server's dev issuer.

    Only a server running with JIT_DEV_IDENTITY=1 (make run) issues them, and
    only it accepts them; against any other, your identity provider gives you
    a token. The policies may ask for --mfa (approving in production,
    breaking glass).
    """
    click.echo(s.dev_token(user, groups, mfa, ttl))


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
@wait_options
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
    wait: bool,
    timeout: str | None,
) -> None:
    """Ask for access to RESOURCE.

    With --wait, show its progress on stderr until it is active (then how to
    use it), denied, timed out or ended; Ctrl-C stops waiting, not the request.
    """
    timeout_s = timeout_seconds(wait, timeout)
    if wait and dry_run:
        raise click.UsageError("--wait files nothing to wait for with --dry-run")
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
        if not preview["allowed"]:
            sys.exit(FAILED)  # a script's `jit request --dry-run && ...` must stop here
        return
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
    filed = s.api.call("POST", "/v1/requests", body=body, headers=headers)
    if wait:
        wait_for_request(s, filed, timeout_s)
    else:
        s.show(filed)


def _post(s: Session, request_id: str, verb: str, body: dict[str, Any]) -> dict[str, Any]:
    path = f"/v1/requests/{quote(request_id, safe='')}/{verb}"
    return s.api.call("POST", path, body={k: v for k, v in body.items() if v is not None})  # type: ignore[no-any-return]


def _act(s: Session, request_id: str, verb: str, body: dict[str, Any]) -> None:
    s.show(_post(s, request_id, verb, body))


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
@wait_options
@json_option
@click.pass_obj
def extend(s: Session, request_id: str, duration: str, reason: str, wait: bool, timeout: str | None) -> None:
    """Keep your active access longer (within the resource's maximum).

    With --wait, where the extension needs approval, wait until it is decided.
    """
    timeout_s = timeout_seconds(wait, timeout)
    asked = _post(s, request_id, "extend", {"duration": duration, "reason": reason})
    if wait:
        wait_for_extension(s, asked, timeout_s)
    else:
        s.show(asked)


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


cli.add_command(config.config)  # jit config set/get/unset/show: cli/config.py
cli.add_command(audit)  # jit audit, jit audit verify: cli/audit.py
cli.add_command(keys)  # jit keys new/list/jwks/remove: cli/keys.py
policy_commands.register(cli, _act)  # jit acknowledge, reviews, catalog, policy check: cli/policy_commands.py


def main() -> None:
    code = 0
    try:
        cli(prog_name="jit")
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 0 if e.code is None else 1
    except Exception as e:  # never a traceback: one line, like every other failure
        CliError(f"unexpected error: {type(e).__name__}: {e}").show()
        code = FAILED
    sys.stdout.flush()
    sys.stderr.flush()
    # Leave without the interpreter's shutdown: where a command used a Temporal client
    # (jit audit verify reads the anchors), the SDK's native threads can abort it
    # (SIGABRT) and turn a clean exit code into -6. Nothing is left to clean up here.
    os._exit(code)


if __name__ == "__main__":
    main()
