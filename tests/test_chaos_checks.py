"""The chaos judge itself: a cancel (or deny, or revoke) whose answer a kill lost may have taken
effect. Its retry then finds the request ended and answers 409, and the request is right to have
ended as the lost call asked; a call that was answered 409 and nothing else changed nothing."""

from datetime import UTC, datetime

import pytest

from tests.chaos_checks import Verdict, _check_final
from tests.chaos_workload import APPROVED, Call, Trace

T = datetime(2026, 11, 30, 12, tzinfo=UTC)


def _trace(verb: str, *statuses: int | None) -> Trace:
    t = Trace(index=11, scenario=verb, resource=APPROVED, duration_s=4, key="k-11", request_id="r")
    t.calls = [Call(verb, T, T, status) for status in statuses]
    return t


def _problems(t: Trace, status: str) -> list[str]:
    v = Verdict(t)
    _check_final(v, {"status": status, "activated_at": None})
    return v.problems


@pytest.mark.parametrize(("verb", "target"), [("cancel", "cancelled"), ("deny", "denied")])
def test_a_decision_whose_answer_was_lost_may_have_been_applied(verb: str, target: str) -> None:
    lost_then_conflict = _trace(verb, None, 409)
    assert _problems(lost_then_conflict, target) == []
    # Or it never arrived, and every retry was lost too: the request waits out its approval.
    assert _problems(_trace(verb, None, 503), "timed_out") == []
    assert _problems(lost_then_conflict, "expired") == [f"ended expired, expected {target} or timed_out"]


def test_a_definite_answer_is_held_to() -> None:
    assert _problems(_trace("cancel", 200), "cancelled") == []
    assert _problems(_trace("cancel", 200), "timed_out") == ["ended timed_out, expected cancelled"]
    # Answered 409 and never sent again: the cancel changed nothing.
    assert _problems(_trace("cancel", 409), "cancelled") == ["ended cancelled, expected expired"]
    assert _problems(_trace("revoke", None), "expired") == []
