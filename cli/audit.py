"""``jit audit``: export the audit trail (``GET /v1/audit``) and verify the local audit log's chain.

jit audit [--from TIME] [--to TIME] [--requester USER] [--resource ID] [-o FILE]
jit audit verify [--data-dir DIR] [--chain-only]
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import click
from temporalio.service import RPCError

from cli.client import USAGE, CliError
from cli.session import TIMESTAMP, Session
from core.audit_anchors import read_anchors
from core.audit_chain import Anchor
from core.audit_store import STORE_ERRORS, describe, open_audit_log
from core.settings import Settings
from core.temporal import connect


def _timestamp(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    return TIMESTAMP.convert(value, param, ctx)


@click.group(invoke_without_command=True)
@click.option(
    "--from",
    "since",
    metavar="TIME",
    callback=_timestamp,
    help="From this time on (ISO 8601; local time without a zone).",
)
@click.option("--to", "until", metavar="TIME", callback=_timestamp, help="Before this time (ISO 8601).")
@click.option("--requester", metavar="USER", help="Only USER's requests.")
@click.option("--resource", metavar="ID", help="Only requests for this resource.")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write to FILE (complete or not at all) instead of stdout.",
)
@click.pass_context
def audit(
    ctx: click.Context,
    since: str | None,
    until: str | None,
    requester: str | None,
    resource: str | None,
    output: Path | None,
) -> None:
    """Export every lifecycle event as JSON Lines (auditors and admins).

    One event a line, by time, then request id, then seq: who requested,
    approved, denied, revoked... what, when and why. From the audit log,
    which outlives Temporal's history retention.
    """
    given = {"--from": since, "--to": until, "--requester": requester, "--resource": resource, "--output": output}
    if ctx.invoked_subcommand is not None:
        if any(v is not None for v in given.values()):
            named = ", ".join(k for k, v in given.items() if v is not None)
            raise click.UsageError(f"{named}: an option of jit audit, not of jit audit {ctx.invoked_subcommand}")
        return
    s: Session = ctx.obj  # made by jit's group (cli/main.py)
    params = {k: v for k, v in {"from": since, "to": until, "requester": requester, "resource": resource}.items() if v}
    if output is None:
        out = click.get_binary_stream("stdout")

        def echo(chunk: bytes) -> None:
            out.write(chunk)
            out.flush()

        try:
            s.api.stream("/v1/audit", echo, params=params)
        except BrokenPipeError:  # jit audit | head: the reader has what it wanted
            os.dup2(os.open(os.devnull, os.O_WRONLY), out.fileno())
        return
    partial = output.with_name(f".{output.name}.part")
    lines = 0
    try:
        with partial.open("wb") as f:

            def write(chunk: bytes) -> None:
                nonlocal lines
                lines += chunk.count(b"\n")
                f.write(chunk)

            s.api.stream("/v1/audit", write, params=params)
        os.replace(partial, output)
    except OSError as e:
        raise CliError(f"cannot write {output}: {e.strerror or e}") from None
    finally:
        partial.unlink(missing_ok=True)
    click.echo(f"{lines} event{'s' if lines != 1 else ''} written to {output}", err=True)


@audit.command()
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="The worker's data dir [env: JIT_DATA_DIR, default .data].",
)
@click.option(
    "--chain-only",
    is_flag=True,
    help="Without Temporal's anchors: the chain alone cannot see records cut off at the end.",
)
def verify(data_dir: Path | None, chain_only: bool) -> None:
    """Recompute the hash chain of the audit log (DATA_DIR/audit.sqlite3, or JIT_AUDIT_LOG_DSN's).

    Checks it against the anchors the worker keeps in Temporal (the worker's
    JIT_TEMPORAL_ADDRESS, JIT_TEMPORAL_NAMESPACE and JIT_TASK_QUEUE): every
    anchored record must still be there with its hash. Prints "ok: N records",
    or names the first record that was edited, removed or reordered, or the
    anchor the log fell short of, and exits 1.
    """
    settings = Settings(data_dir=data_dir) if data_dir is not None else Settings()
    path = settings.audit_log_path
    if not settings.audit_dsn and not path.is_file():
        raise CliError(f"no audit log at {path}: pass the worker's --data-dir", USAGE)
    anchors: list[Anchor] = []
    if not chain_only:
        try:
            anchors = asyncio.run(_anchors(settings))
        except (RuntimeError, RPCError) as e:
            raise CliError(
                f"cannot read the audit anchors from Temporal at {settings.temporal_address} ({e}); "
                "--chain-only checks the chain alone, which cannot see records cut off at the end"
            ) from None
    try:
        checked, broken = open_audit_log(settings, create=False).check(anchors)
    except STORE_ERRORS as e:
        raise CliError(f"cannot read {describe(settings)}: {e}") from None
    if broken is not None:
        raise CliError(f"broken at record {broken.n} (event {broken.event_id}): {broken.why}")
    click.echo(f"ok: {checked} record{'s' if checked != 1 else ''}")
    if anchors:
        newest = anchors[0]
        when = f" of {newest.at.isoformat()}" if newest.at else ""
        click.echo(f"checked against {len(anchors)} anchor(s); the newest{when} saw {newest.head.count}", err=True)
    elif not chain_only:
        click.echo(
            f"no anchor in Temporal for task queue {settings.task_queue} yet: "
            "records cut off at the end would go unseen",
            err=True,
        )


async def _anchors(settings: Settings) -> list[Anchor]:
    return await read_anchors(await connect(settings), settings)
