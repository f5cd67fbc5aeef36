"""What every ``jit`` command shares: the session (server, identity, output), ``--json``, parameter types.

Its own module so that the command modules (cli/main.py, policy_commands.py,
audit.py, wait.py) import it, and not each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import click

from cli import config
from cli.client import USAGE, Api, CliError, echo_json, status_line
from core.durations import DurationError, parse_duration

AS_TTL = "5m"  # --as: a token for this one command


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
    server_option: str | None
    token: str | None
    as_user: str | None
    as_groups: tuple[str, ...]
    json: bool = False
    as_mfa: bool = False
    _server: str | None = field(default=None, repr=False)
    _as_token: str | None = field(default=None, repr=False)

    @property
    def server(self) -> str:
        """--server, JIT_SERVER, the config file, the default: resolved when a command needs it."""
        if self._server is None:
            self._server = config.resolve_server(self.server_option)[0]
        return self._server

    @property
    def api(self) -> Api:
        return Api(self.server, self._identity)

    def _identity(self) -> str:
        if self.as_user:
            if self._as_token is None:  # once per command: jit ls --all calls the API page after page
                self._as_token = self.dev_token(self.as_user, self.as_groups, self.as_mfa, AS_TTL)
            return self._as_token
        if self.token:
            return self.token
        raise CliError("no identity: set JIT_TOKEN, or pass --token TOKEN (or --as USER against a dev server)", USAGE)

    def forget_identity(self) -> None:
        """The next call mints a new --as token (one lives AS_TTL; jit request --wait may outlast it)."""
        self._as_token = None

    def dev_token(self, user: str, groups: tuple[str, ...], mfa: bool, ttl: str) -> str:
        """A dev identity token from the server's dev issuer (``POST /v1/dev/token``)."""
        off = (
            f"{self.server} does not issue dev tokens: its dev identity issuer is off "
            "(JIT_DEV_IDENTITY=1 turns it on, make run does); elsewhere your identity provider "
            "gives you a token for JIT_TOKEN"
        )
        body = {"user": user, "groups": list(groups), "mfa": mfa, "ttl": ttl}
        answer = Api(self.server, None).call("POST", "/v1/dev/token", body=body, explain={404: off, 405: off})
        return str(answer["token"])

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
