"""Request ids as people type them: a full id, or a unique prefix of one (as git takes commit prefixes).

A full id (a UUID) goes straight to its workflow, with no extra round trip. A
prefix (4 to 35 hex digits and dashes) is looked up in Temporal visibility
(``WorkflowId STARTS_WITH``), within the caller's scope, the very clauses the
request list uses (api/listing.py ``base_clauses``): an ambiguous prefix names
only candidates the caller may see, and a prefix that matches only requests
the caller cannot see reads as unknown. Anything else is left to the workflow
lookup, which answers 404 for what is not an id.

Ambiguous is 409 (the id is fine, it just names more than one request, as a
conflict); unknown is 404; too short is 422 naming the rule.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from temporalio.client import Client
from temporalio.service import RPCError

from api import errors, listing
from core.temporal import WORKFLOW_ID_PREFIX

MIN_PREFIX = 4
SHOWN_CANDIDATES = 10
FIELD = "request_id"
_FULL = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_PREFIX = re.compile(r"^[0-9a-f-]{1,35}$")
RULE = f"a request id, or a unique prefix of one: at least {MIN_PREFIX} characters, hex digits and dashes"


async def resolve(client: Client, request_id: str, scope: Callable[[], list[str]]) -> str:
    """The full id ``request_id`` stands for; 404, 409 or 422 (see the module's doc) if none.

    ``scope``: the visibility clauses of what the caller may see (listing.base_clauses).
    """
    lowered = request_id.lower()
    if _FULL.fullmatch(lowered):
        return lowered
    if not _PREFIX.fullmatch(lowered):
        return request_id  # not an id at all: the workflow lookup answers 404, as for any unknown id
    if len(lowered) < MIN_PREFIX:
        raise errors.Invalid(f"{FIELD}: {lowered!r} is too short for an id prefix; give {RULE}", field=FIELD)
    # The prefix holds only [0-9a-f-] (checked above): safe inside the quotes.
    clauses = scope()
    clauses.append(f"WorkflowId STARTS_WITH '{WORKFLOW_ID_PREFIX}{lowered}'")
    found: list[str] = []
    try:
        async for execution in client.list_workflows(
            " AND ".join(clauses),
            page_size=SHOWN_CANDIDATES + 1,
            limit=SHOWN_CANDIDATES + 1,
            rpc_timeout=listing.QUERY_TIMEOUT,
        ):
            found.append(execution.id.removeprefix(WORKFLOW_ID_PREFIX))
    except RPCError as e:
        raise errors.from_rpc_error(e) from e
    candidates = sorted(set(found))
    if not candidates:
        raise errors.NotFound(f"no request starts with {lowered!r}")
    if len(candidates) == 1:
        return candidates[0]
    shown = ", ".join(candidates[:SHOWN_CANDIDATES])
    more = " and more" if len(candidates) > SHOWN_CANDIDATES else ""
    raise errors.Conflict(
        f"{FIELD}: {lowered!r} is ambiguous, it starts {shown}{more}; give more characters", field=FIELD
    )
