"""Who approves an extension past what was approved (extension_approval): the first stage's
groups, N distinct people as for the request, never its requester; a deny by any of them."""

from datetime import UTC, datetime

import pytest
from temporalio.exceptions import ApplicationError

from core import errors
from core.models import StageSnapshot
from tests.workflow_support import ALICE, BOB, CAROL, LEAD, request_input
from workflows.approvals import ApprovalRouting

NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)


def routing(approvals: int) -> ApprovalRouting:
    stages = [StageSnapshot(name="owners", groups=["db-owners"], approvals=approvals)]
    req = request_input(stages=stages, extension_approval=True)
    return ApprovalRouting(req, NOW)


def test_an_extension_needs_as_many_distinct_approvers_as_the_first_stage() -> None:
    r = routing(approvals=2)
    r.new_extension()
    r.check_extension(BOB, "approve")
    assert r.record_extension(BOB.sub) is False
    # The same approver again counts once: refused, as for the request itself.
    with pytest.raises(ApplicationError, match="already approved this extension") as again:
        r.check_extension(BOB, "approve")
    assert again.value.type == errors.CONFLICT  # 409
    r.check_extension(CAROL, "approve")
    assert r.record_extension(CAROL.sub) is True
    # The next extension starts its count again.
    r.new_extension()
    r.check_extension(BOB, "approve")
    assert r.extension_approvers == []


@pytest.mark.parametrize("verb", ["approve", "deny"])
def test_the_requester_and_outsiders_cannot_decide_an_extension(verb: str) -> None:
    r = routing(approvals=1)
    r.new_extension()
    with pytest.raises(ApplicationError, match="your own extension") as own:
        r.check_extension(ALICE, verb)
    with pytest.raises(ApplicationError, match="only members of db-owners") as outsider:
        r.check_extension(LEAD, verb)
    assert own.value.type == outsider.value.type == errors.FORBIDDEN  # 403
