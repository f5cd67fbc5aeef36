"""``POST /v1/slack/interactions``: Slack's Interactivity request URL (docs/slack.md).

Not behind a bearer token: Slack's signature is the authentication
(api/slack_interactions.py). Absent (404) unless the notifications file has a
Slack channel, whose ``signing_secret_env`` names the secret.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Request, Response

from api import errors
from api.openapi_errors import documented
from api.schemas import ErrorBody
from api.slack_interactions import ReplayGuard, SlackDecider, parse, slack_channel, verify

router = APIRouter(prefix="/v1/slack", tags=["slack"])

_WHY = {
    400: "signed, but the form has no `payload`, or it is not JSON, or a click lacks its value or user",
    401: "not signed with the Slack app's signing secret, a timestamp more than 5 minutes off, or a replay",
    404: "no slack channel in the notifications file: Slack interactivity is off",
    503: "a slack channel is configured but its signing secret's environment variable is not set",
}

# Slack posts a form with one field, ``payload``, a JSON string; the route reads the raw
# body itself (the signature is over its exact bytes), so the schema is given here.
_FORM = {
    "requestBody": {
        "required": True,
        "content": {
            "application/x-www-form-urlencoded": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "payload": {"type": "string", "description": "the interaction, as JSON (block_actions)"}
                    },
                    "required": ["payload"],
                }
            }
        },
    }
}


@router.post(
    "/interactions",
    status_code=200,
    response_class=Response,
    responses={
        200: {"description": "verified and acknowledged; the decision follows, answered through response_url"},
        **documented(),  # 413
        **{status: {"model": ErrorBody, "description": why} for status, why in _WHY.items()},
    },
    openapi_extra=_FORM,
)
async def interactions(
    request: Request,
    x_slack_signature: Annotated[str | None, Header(max_length=100)] = None,
    x_slack_request_timestamp: Annotated[str | None, Header(max_length=20)] = None,
) -> Response:
    """An Approve or Deny click on a jit-access message, signed by Slack.

    401 unless signed with the app's signing secret within 5 minutes, and not seen before.
    The click is acknowledged at once and decided after, as the person the Slack user maps
    to, with every policy check; the clicker alone is told the outcome."""
    state = request.app.state
    channel = slack_channel(state.notifications)
    if channel is None:
        raise errors.NotFound("Slack interactivity is off: the notifications file has no slack channel")
    replays = getattr(state, "slack_replays", None)
    if replays is None:
        replays = state.slack_replays = ReplayGuard()
    body = await request.body()
    verify(channel, body, x_slack_request_timestamp, x_slack_signature, replays)
    click = parse(body)
    if click is not None:
        decider = getattr(state, "slack_decider", None)
        if decider is None:
            decider = state.slack_decider = SlackDecider(state.notifications, state.requests, state.policies)
        decider.start(click)
    return Response(status_code=200)
