"""``jit request --wait`` and ``jit extend --wait``: follow a request until it is decided.

The live status goes to stderr (on a terminal one line rewritten in place, else one
line per change), so stdout keeps what a script wants: the final status line, the id
first, and for active access how to use it. Each outcome has its exit code
(cli/client.py ``EXIT_CODES``). Whatever ends the wait early (--timeout, Ctrl-C)
leaves the request filed: it is the server's, not this process's.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any, TextIO
from urllib.parse import quote

import click

from cli.client import (
    DENIED,
    ENDED,
    INTERRUPTED,
    LEGACY_STAGE,
    OK,
    TIMED_OUT,
    UNAUTHENTICATED,
    UNREACHABLE,
    CliError,
    echo_json,
    status_line,
)
from cli.session import Session
from core.durations import DurationError, format_duration, parse_duration

View = dict[str, Any]
# Quick at first (an approver may be at the keyboard), then once a second: the API's
# GET reads the workflow's state, cheap but not free.
FIRST_POLL_S, MAX_POLL_S = 0.25, 1.0
# A server that stays unreachable this long ends the wait (exit 3); a restart does not.
UNREACHABLE_GRACE_S = 60.0
REQUEST_OUTCOMES = {
    "active": OK,
    "denied": DENIED,
    "timed_out": TIMED_OUT,
    "cancelled": ENDED,
    "failed": ENDED,
    "revoked": ENDED,
    "expired": ENDED,
}


def wait_options(f: Any) -> Any:
    """``--wait [--timeout DURATION]`` for jit request and jit extend."""
    f = click.option(
        "--timeout",
        metavar="DURATION",
        help="With --wait: stop waiting after this long, e.g. 10m (exit 3; the request stays filed).",
    )(f)
    return click.option("--wait", is_flag=True, help="Wait until it is decided; the exit code tells how.")(f)


def timeout_seconds(wait: bool, timeout: str | None) -> int | None:
    if timeout is None:
        return None
    if not wait:
        raise click.UsageError("--timeout goes with --wait")
    try:
        return parse_duration(timeout)
    except DurationError as e:
        raise click.BadParameter(str(e), param_hint="'--timeout'") from None


class StatusLine:
    """On a terminal one line rewritten in place; anywhere else one line per change."""

    def __init__(self, stream: TextIO | None = None):
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.last: str | None = None
        self.view: View | None = None  # what the line shows: the latest answer

    def show(self, text: str, view: View | None = None) -> None:
        self.view = view or self.view
        if text == self.last:
            return
        self.stream.write(f"\r\x1b[K{text}" if self.tty else f"{text}\n")
        self.stream.flush()
        self.last = text

    def close(self) -> None:
        # On a terminal the live line gives way to the result that follows on stdout.
        if self.tty and self.last is not None:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
        self.last = None


def request_progress(view: View) -> str:
    """``pending  approved by bob (1 of 2)`` once someone approved; else the usual status line."""
    approvals = view.get("approvals") or []
    if view["status"] != "pending" or not approvals:
        return status_line(view)
    who = ", ".join(a["approver"] for a in approvals)
    line = f"{view['id']}  pending  approved by {who} ({len(approvals)} of {view['approvals_required']})"
    stage = view.get("stage")
    if stage and stage != LEGACY_STAGE and view.get("eligible_groups"):
        line += f"; now stage {stage}: {', '.join(view['eligible_groups'])}"
    return line


def request_outcome(view: View) -> int | None:
    return REQUEST_OUTCOMES.get(view["status"])


def extension_outcome(before: View) -> Callable[[View], int | None]:
    """Extended (the expiry moved), denied (it did not), or the grant ended first."""

    def outcome(view: View) -> int | None:
        if view["status"] != "active":
            return ENDED
        if view.get("pending_extension"):
            return None
        return OK if view.get("expires_at") != before.get("expires_at") else DENIED

    return outcome


def follow(
    fetch: Callable[[], View],
    first: View,
    outcome: Callable[[View], int | None],
    progress: Callable[[View], str],
    line: StatusLine,
    timeout_s: int | None,
) -> tuple[int | None, View]:
    """Poll until ``outcome`` says how it ended; None with the last view when --timeout passes,
    INTERRUPTED on Ctrl-C."""
    try:
        return _poll(fetch, first, outcome, progress, line, timeout_s, time.monotonic())
    except KeyboardInterrupt:
        return INTERRUPTED, line.view or first


def _poll(
    fetch: Callable[[], View],
    view: View,
    outcome: Callable[[View], int | None],
    progress: Callable[[View], str],
    line: StatusLine,
    timeout_s: int | None,
    start: float,
) -> tuple[int | None, View]:
    delay, unreachable_since = FIRST_POLL_S, None
    while True:
        line.show(progress(view), view)
        code = outcome(view)
        if code is not None:
            return code, view
        left = None if timeout_s is None else timeout_s - (time.monotonic() - start)
        if left is not None and left <= 0:
            return None, view
        time.sleep(delay if left is None else min(delay, left))
        try:
            latest = fetch()
        except CliError as e:
            if e.exit_code != UNREACHABLE:
                raise
            unreachable_since = unreachable_since or time.monotonic()
            if time.monotonic() - unreachable_since > UNREACHABLE_GRACE_S:
                raise
            line.show(f"{view['id']}  {view['status']}  (server not answering; still trying)", view)
            delay = MAX_POLL_S
            continue
        unreachable_since = None
        delay = FIRST_POLL_S if latest != view else min(delay * 2, MAX_POLL_S)
        view = latest


def fetcher(s: Session, request_id: str) -> Callable[[], View]:
    path = f"/v1/requests/{quote(request_id, safe='')}"

    def fetch() -> View:
        try:
            return s.api.call("GET", path)  # type: ignore[no-any-return]
        except CliError as e:
            if e.exit_code != UNAUTHENTICATED or not s.as_user:
                raise
            s.forget_identity()  # an --as token lives minutes; a wait may last longer
            return s.api.call("GET", path)  # type: ignore[no-any-return]

    return fetch


def _run(
    s: Session,
    first: View,
    outcome: Callable[[View], int | None],
    progress: Callable[[View], str],
    timeout_s: int | None,
) -> tuple[int | None, View]:
    line = StatusLine()
    try:
        code, view = follow(fetcher(s, first["id"]), first, outcome, progress, line, timeout_s)
    finally:
        line.close()
    if code == INTERRUPTED:
        _print(s, view)
        raise CliError(f"stopped waiting; request {view['id']} stays filed: jit show {view['id']}", INTERRUPTED)
    return code, view


def _print(s: Session, view: View) -> None:
    if s.json:
        echo_json(view)
    else:
        click.echo(status_line(view))


def wait_for_request(s: Session, filed: View, timeout_s: int | None) -> None:
    """``jit request --wait``: until active (0), denied (5), timed out (6) or ended otherwise (7)."""
    code, view = _run(s, filed, request_outcome, request_progress, timeout_s)
    _print(s, view)
    if code is None:
        raise _gave_up(view, timeout_s)
    if code == OK:
        if not s.json:
            _usage(view)
        return
    raise CliError(_why(view), code)


def wait_for_extension(s: Session, asked: View, timeout_s: int | None) -> None:
    """``jit extend --wait``: until extended (0), denied (5) or the grant ended (7)."""
    if not asked.get("pending_extension"):  # extended at once, no approval needed
        _print(s, asked)
        return
    code, view = _run(s, asked, extension_outcome(asked), status_line, timeout_s)
    _print(s, view)
    if code is None:
        raise _gave_up(view, timeout_s)
    if code == DENIED:
        raise CliError(f"the extension of request {view['id']} was denied; access ends as before", DENIED)
    if code == ENDED:
        raise CliError(f"the grant ended ({_why(view)}) before the extension was decided", ENDED)


def _gave_up(view: View, timeout_s: int | None) -> CliError:
    waited = format_duration(timeout_s or 0)
    return CliError(
        f"still {view['status']} after {waited}; request {view['id']} stays filed: jit show {view['id']}",
        UNREACHABLE,
    )


def _why(view: View) -> str:
    status = view["status"]
    for key in ("denial", "cancellation", "revocation"):
        decision = view.get(key)
        if decision:
            reason = f": {decision['reason']}" if decision.get("reason") else ""
            return f"{status} by {decision['actor']}{reason}"
    if status == "timed_out":
        return "timed out: nobody approved it in time"
    if status == "failed" and view.get("failure"):
        return f"failed: {view['failure']}"
    return status


def _usage(view: View) -> None:
    """How to use the access; never the secret itself (that is for ``jit token``)."""
    rid = view["id"]
    click.echo(f"token:  jit token {rid}")
    if view.get("principal"):  # a provisioned database role
        click.echo(f"psql:   jit token {rid} --psql   (role {view['principal']}; the command holds its password)")
