"""The policy-facing ``jit`` commands: what may I ask for, break-glass reviews, checking policies.

jit catalog                       what you may request now, and how it is approved
jit reviews                       break-glass grants waiting for their review
jit acknowledge ID [--comment C]  close the review of a break-glass grant
jit policy check [DIR] [--catalog FILE]
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import click

from cli.client import echo_json, table, when
from cli.session import Session, json_option
from core.durations import format_duration


def register(cli: click.Group, act: Callable[..., None]) -> None:
    @cli.command()
    @click.argument("request_id", metavar="ID")
    @click.option("--comment", help="What the review found.")
    @json_option
    @click.pass_obj
    def acknowledge(s: Session, request_id: str, comment: str | None) -> None:
        """Close the review of a break-glass grant (not your own)."""
        act(s, request_id, "acknowledge", {"comment": comment})

    @cli.command()
    @json_option
    @click.pass_obj
    def reviews(s: Session) -> None:
        """Break-glass grants whose review is pending, newest first."""
        page = s.api.call("GET", "/v1/reviews")
        if s.json:
            echo_json(page)
            return
        items = page["items"]
        if not items:
            click.echo("no reviews pending")
            return
        table(
            ["ID", "STATUS", "REQUESTER", "RESOURCE", "ACTION", "CREATED", "UNTIL"],
            [
                [
                    i["id"],
                    i["status"] or "?",
                    i["requester"] or "?",
                    i["resource"] or "?",
                    i["action"] or "?",
                    when(i["created_at"], short=True),
                    when(i.get("ended_at") or i.get("expires_at"), short=True),
                ]
                for i in items
            ],
        )

    @cli.command()
    @json_option
    @click.pass_obj
    def catalog(s: Session) -> None:
        """What you may request now: the longest duration, and who approves."""
        views = s.api.call("GET", "/v1/catalog")
        if s.json:
            echo_json(views)
            return
        if not views:
            click.echo("nothing you may request")
            return
        rows = [[v["resource"], a["action"], *_limits(a)] for v in views for a in v["actions"]]
        table(["RESOURCE", "ACTION", "UP TO", "APPROVAL", "BREAK-GLASS"], rows)

    cli.add_command(policy)


def _limits(action: dict[str, Any]) -> list[str]:
    cap = format_duration(action["max_duration_s"]) if action["max_duration_s"] else "-"
    stages = action["stages"]
    if not action["max_duration_s"]:
        approval = "-"
    elif not stages:
        approval = "none"
    else:
        approval = " then ".join(",".join(s["groups"]) for s in stages)
        if action["auto_approve"]:
            approval = f"none up to {format_duration(action['auto_approve_max_s'])}, else {approval}"
    glass = format_duration(action["break_glass_max_s"]) if action["break_glass_max_s"] else "-"
    return [cap, approval, glass]


@click.group()
def policy() -> None:
    """The access policies (config/policies, beside config/catalog.yaml)."""


@policy.command(context_settings={"ignore_unknown_options": True, "help_option_names": []})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def check(args: tuple[str, ...]) -> None:
    """Check policies and catalog as the API loads them: jit policy check [DIR] [--catalog FILE].

    Prints every problem as file:line: message and exits 1; needs no server.
    """
    from policy.check import main  # the Cedar engine only for this command

    sys.exit(main(list(args)))
