"""Everything the ``jit`` commands share: HTTP calls, error lines and output."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import click
import httpx

from core.durations import format_duration

LEGACY_STAGE = "approval"  # core.catalog's name for the one stage of approvals_required
# Approve and revoke wait for the workflow to settle; the API gives up after 30s.
TIMEOUT_S = 60.0


# Exit codes, the same for every command (``jit --help`` prints this table).
OK, FAILED, USAGE, UNREACHABLE, UNAUTHENTICATED = 0, 1, 2, 3, 4
DENIED, TIMED_OUT, ENDED, INTERRUPTED = 5, 6, 7, 130  # --wait's outcomes (cli/wait.py)
EXIT_CODES = {
    OK: "done (--dry-run: the request would be allowed; --wait: access is active, or extended)",
    FAILED: "refused or failed: the API said no, --dry-run would be refused, a check found problems",
    USAGE: "usage: a wrong command line, no identity given, an unreadable config file",
    UNREACHABLE: "not now: the server is unreachable, timed out or answered 503, or --timeout passed; retry later",
    UNAUTHENTICATED: "the server did not accept your identity token (401): get a new one",
    DENIED: "--wait: the request (or the extension) was denied",
    TIMED_OUT: "--wait: nobody approved the request in time",
    ENDED: "--wait: cancelled, failed, or ended (revoked, expired) before it was active or extended",
    INTERRUPTED: "--wait: interrupted (Ctrl-C); the request stays filed",
}
UNAUTHENTICATED_HINT = (
    "the server did not accept your identity token: it was signed for another server or has expired; "
    "get a new one with `jit dev-token USER` (dev) or from your identity provider"
)


class CliError(click.ClickException):
    """One line on stderr, ``jit: ...``, and an exit code of :data:`EXIT_CODES`."""

    def __init__(self, message: str, exit_code: int = FAILED):
        super().__init__(message)
        self.exit_code = exit_code

    def show(self, file: Any = None) -> None:
        click.echo(f"jit: {' '.join(self.message.split())}", err=True)  # one line, whatever the API said


class Api:
    """``token``: the caller's identity token, asked for on each call; None for unauthenticated calls."""

    def __init__(self, server: str, token: Callable[[], str] | None):
        self.server = server.rstrip("/")
        self._token = token

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token()}"} if self._token else {}

    def call(
        self,
        method: str,
        path: str,
        *,
        body: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        explain: dict[int, str] | None = None,
    ) -> Any:
        """The answer's JSON; a CliError if there is none (``explain``: a status's message instead of the API's)."""
        headers = {**self._auth(), **(headers or {})}
        try:
            with httpx.Client(base_url=self.server, timeout=TIMEOUT_S) as http:
                response = http.request(method, path, json=body, params=params, headers=headers)
        except (httpx.ConnectError, httpx.ConnectTimeout):
            raise CliError(f"cannot reach {self.server}: is the API running? (make run)", UNREACHABLE) from None
        except httpx.TimeoutException:
            raise CliError(
                f"{self.server} did not answer within {TIMEOUT_S:.0f}s; check with jit show", UNREACHABLE
            ) from None
        except httpx.HTTPError as e:
            raise CliError(f"cannot talk to {self.server}: {e}", UNREACHABLE) from None
        if response.is_error:
            if explain and response.status_code in explain:
                raise CliError(explain[response.status_code])
            raise self._error(response)
        try:
            return response.json()
        except ValueError:
            raise CliError(f"{self.server} answered {response.status_code} without JSON: is it the jit API?") from None

    def stream(self, path: str, write: Callable[[bytes], None], *, params: dict[str, str] | None = None) -> None:
        """GET ``path`` and hand the body to ``write`` chunk by chunk, as it arrives."""
        headers = self._auth()
        try:
            with (
                httpx.Client(base_url=self.server, timeout=TIMEOUT_S) as http,
                http.stream("GET", path, params=params, headers=headers) as response,
            ):
                if response.is_error:
                    response.read()
                    raise self._error(response)
                for chunk in response.iter_bytes():
                    write(chunk)
        except (httpx.ConnectError, httpx.ConnectTimeout):
            raise CliError(f"cannot reach {self.server}: is the API running? (make run)", UNREACHABLE) from None
        except httpx.TimeoutException:
            raise CliError(
                f"{self.server} stopped answering for {TIMEOUT_S:.0f}s; the output is incomplete", UNREACHABLE
            ) from None
        except httpx.HTTPError as e:
            raise CliError(f"cannot talk to {self.server}: {e}; the output is incomplete", UNREACHABLE) from None

    def _error(self, response: httpx.Response) -> CliError:
        try:
            error = response.json()["error"]
            line = f"{response.status_code} {error['code']}: {error['message']}"
            if error.get("field"):
                line += f" (field: {error['field']})"
        except (ValueError, KeyError, TypeError):
            line = f"{response.status_code} {response.reason_phrase}".strip()
        if response.status_code == 401:
            return CliError(f"{line} ({UNAUTHENTICATED_HINT})", UNAUTHENTICATED)
        return CliError(line, UNREACHABLE if response.status_code == 503 else FAILED)


# -- output -------------------------------------------------------------------


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2))


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value)


def when(value: str | None, *, short: bool = False) -> str:
    """An API timestamp in the local time zone; ``short`` drops the seconds and the zone."""
    if not value:
        return "-"
    local = parse_time(value).astimezone()
    return local.strftime("%Y-%m-%d %H:%M" if short else "%Y-%m-%d %H:%M:%S %Z")


def clock(value: str) -> str:
    """``14:05:09 UTC`` today, with the date on any other day."""
    local = parse_time(value).astimezone()
    return local.strftime(
        "%H:%M:%S %Z" if local.date() == datetime.now().astimezone().date() else "%Y-%m-%d %H:%M:%S %Z"
    )


def relative(value: str) -> str:
    seconds = int((parse_time(value) - datetime.now(UTC)).total_seconds())
    return f"in {format_duration(seconds)}" if seconds > 0 else f"{format_duration(-seconds)} ago"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=False)]
    for row in (headers, *rows):
        click.echo("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def status_line(view: dict[str, Any]) -> str:
    """``<id>  <status>`` and what comes next: the id first, so ``cut -d' ' -f1`` finds it."""
    line = f"{view['id']}  {view['status']}"
    status = view["status"]
    if status == "active" and view.get("expires_at"):
        line += f"  until {clock(view['expires_at'])}"
    elif status == "pending":
        missing = view["approvals_required"] - len(view.get("approvals", []))
        needs = f"needs {missing} approval{'s' if missing != 1 else ''}"
        stage, eligible = view.get("stage"), ", ".join(view.get("eligible_groups") or [])
        if stage and stage != LEGACY_STAGE and eligible:
            line += f"  ({needs}; now stage {stage}: {eligible})"
        else:
            line += f"  ({needs} from {eligible or ', '.join(view.get('approver_groups', []))})"
    elif status == "scheduled" and view.get("start_at"):
        line += f"  (starts {clock(view['start_at'])})"
    elif status == "failed" and view.get("failure"):
        line += f"  ({view['failure']})"
    pending = view.get("pending_extension")
    if pending:
        line += f"  (extension of {format_duration(pending['duration_s'])} waiting for approval)"
    elif view.get("extension_pending"):  # a list row: the summary says only that one waits
        line += "  (extension waiting for approval)"
    if view.get("review_pending"):
        line += "  (break-glass: review pending)"
    return line


def _decision(d: dict[str, Any]) -> str:
    text = f"by {d['actor']} at {when(d['at'])}"
    return f"{text}: {d['reason']}" if d.get("reason") else text


def _duration(view: dict[str, Any]) -> str:
    """As requested, plus what extensions added (the view records who extended, not by how much)."""
    asked = view["duration_s"]
    if view.get("extensions") and view.get("activated_at") and view.get("expires_at"):
        granted = int((parse_time(view["expires_at"]) - parse_time(view["activated_at"])).total_seconds())
        if granted > asked:
            return f"{format_duration(asked)} (+{format_duration(granted - asked)} extended)"
    return format_duration(asked)


def describe(view: dict[str, Any]) -> None:
    """A request, one fact a line, only the facts it has."""
    rows: list[tuple[str, str]] = [
        ("id", view["id"]),
        ("status", view["status"]),
        ("requester", view["requester"]),
        ("resource", view["resource"]),
        ("action", view["action"]),
        ("duration", _duration(view)),
        ("reason", view["reason"]),
    ]
    if view.get("ticket"):
        rows.append(("ticket", view["ticket"]))
    required, approvals = view["approvals_required"], view.get("approvals", [])
    groups = ", ".join(view.get("approver_groups", [])) or "-"
    rows.append(("approvals", f"{len(approvals)} of {required} from {groups}" if required else "none needed"))
    for a in approvals:
        comment = f": {a['comment']}" if a.get("comment") else ""
        stage = f" [{a['stage']}]" if a.get("stage") and a["stage"] != LEGACY_STAGE else ""
        rows.append(("", f"{a['approver']} at {when(a['at'])}{stage}{comment}"))
    if view.get("stage"):
        escalated = " (escalated)" if view.get("escalated") else ""
        rows.append(("stage", f"{view['stage']}: {', '.join(view.get('eligible_groups') or [])}{escalated}"))
    if view.get("break_glass"):
        review = view.get("review")
        state = f"reviewed {_decision(review)}" if review else "review pending" if view.get("review_pending") else "-"
        rows.append(("review", f"break-glass, {state}"))
    for label, key in [
        ("created", "created_at"),
        ("starts", "start_at"),
        ("approved", "approved_at"),
        ("activated", "activated_at"),
        ("expires", "expires_at"),
        ("ended", "ended_at"),
    ]:
        if view.get(key):
            rows.append((label, when(view[key])))
            if key == "expires_at" and not view.get("ended_at"):
                rows[-1] = (label, f"{rows[-1][1]} ({relative(view[key])})")
    for label, key in [("denied", "denial"), ("cancelled", "cancellation"), ("revoked", "revocation")]:
        if view.get(key):
            rows.append((label, _decision(view[key])))
    for extension in view.get("extensions", []):
        added = f"+{format_duration(extension['duration_s'])} " if extension.get("duration_s") else ""
        rows.append(("extended", added + _decision(extension)))
    if view.get("pending_extension"):
        pending = view["pending_extension"]
        rows.append(
            ("extension", f"+{format_duration(pending['duration_s'])} waiting for approval, asked {_decision(pending)}")
        )
    if view.get("failure"):
        rows.append(("failure", view["failure"]))
    rows += _policy_rows(view.get("policy_reasons") or [], view.get("policy_version"))
    _echo_rows(rows)


def describe_preview(preview: dict[str, Any]) -> None:
    """``jit request --dry-run``: what the policies would decide, and why."""
    field = f" (field: {preview['field']})" if preview.get("field") else ""
    rows: list[tuple[str, str]] = [("allowed", ("yes" if preview["allowed"] else "no") + field)]
    if preview["allowed"]:
        stages = preview.get("stages") or []
        if preview.get("break_glass"):
            approval = "none: break-glass, at once; reviewed afterwards"
        elif not stages:
            approval = "none: approved at once"
        else:
            approval = ", then ".join(_stage_text(st) for st in stages)
        rows.append(("approval", approval))
    cap = preview["max_duration_s"]
    may = f"you may ask for up to {format_duration(cap)}" if cap else "you may not ask for it now"
    rows.append(("duration", f"{format_duration(preview['duration_s'])} ({may})"))
    rows += _policy_rows(preview.get("reasons") or [], preview.get("policy_version"))
    _echo_rows(rows)


def _stage_text(stage: dict[str, Any]) -> str:
    count = stage.get("approvals", 1)
    text = f"{stage['name']} ({count} of {', '.join(stage['groups'])}"
    if stage.get("escalate_to"):
        text += f"; after {format_duration(stage['escalate_after_s'])} also {', '.join(stage['escalate_to'])}"
    return text + ")"


def _policy_rows(reasons: list[str], version: str | None) -> list[tuple[str, str]]:
    rows = [("why" if i == 0 else "", reason) for i, reason in enumerate(reasons)]
    if version:
        rows.append(("policy", version))
    return rows


def _echo_rows(rows: list[tuple[str, str]]) -> None:
    for label, value in rows:
        click.echo(f"{label + ':' if label else '':<11}{value}")
