"""Access decisions as reviewable Cedar policies beside the resource catalog.

    holder = PolicyHolder(Path("config/policies"), Path("config/catalog.yaml"))
    decision = holder.engine.decide_request(actor, resource=…, action=…, …)

See engine.PolicyEngine for the decisions, loader.PolicyHolder for reloads and
check.main for ``jit policy check``.
"""

from policy.context import mfa_from_claims
from policy.decisions import CatalogAction, CatalogView, Decision, RequestDecision, StageSpec
from policy.engine import PolicyEngine
from policy.loader import PolicyHolder, load_engine
from policy.source import PolicyError

__all__ = [
    "CatalogAction",
    "CatalogView",
    "Decision",
    "PolicyEngine",
    "PolicyError",
    "PolicyHolder",
    "RequestDecision",
    "StageSpec",
    "load_engine",
    "mfa_from_claims",
]
