"""Several trusted OIDC issuers at once, people's and workloads', against real OpenID providers.

The providers are ``oidc-provider-mock`` (PyPI), each its own Flask app on a port of
its own, wrapped only to count the requests it serves (discovery, keys). Tokens are
ID tokens it issues through its authorization-code flow, with the claims the test
gives its users: a person's groups, a GitHub Actions job's repository and ref. Key
rotation is the provider restarted on the same port: same issuer, a new key.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import jwt
import oidc_provider_mock
import pytest
import werkzeug.serving
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import ValidationError
from temporalio.testing import WorkflowEnvironment

from core.models import Actor
from core.settings import Settings
from policy import load_engine
from tests.conftest import EXAMPLE_CATALOG, EXAMPLE_POLICIES, Stack, free_port, running_stack

DEPLOY = "k8s:prod/deploy"  # tests/catalog.yaml; tests/policies/workloads.cedar
PEOPLE_AUDIENCE = "jit-people"
CI_AUDIENCE = "jit-ci"
REDIRECT = "http://localhost/callback"
KEY_NOT_PUBLISHED = "identity token is signed with a key the identity provider does not publish"
MAIN = "repo:acme/deploy:ref:refs/heads/main"
BRANCH = "repo:acme/deploy:ref:refs/heads/try-things"


def github_job(sub: str, ref: str) -> oidc_provider_mock.User:
    """The claims GitHub Actions puts in a job's OIDC token (the ones that matter here)."""
    return oidc_provider_mock.User(
        sub=sub,
        claims={
            "repository": "acme/deploy",
            "repository_owner": "acme",
            "ref": ref,
            "ref_type": "branch",
            "workflow": "deploy",
            "environment": "production",
            "run_id": 4242,
        },
    )


CI_JOBS = [github_job(MAIN, "refs/heads/main"), github_job(BRANCH, "refs/heads/try-things")]
PEOPLE = [oidc_provider_mock.User(sub="alice", claims={"groups": ["engineers"], "amr": ["pwd", "otp"]})]


@dataclass
class Provider:
    port: int
    users: list[oidc_provider_mock.User]
    served: Counter[str] = field(default_factory=Counter)  # request paths, across restarts
    _server: werkzeug.serving.BaseWSGIServer | None = None
    _thread: threading.Thread | None = None

    @property
    def issuer(self) -> str:
        return f"http://localhost:{self.port}"  # the mock names itself after the Host asked

    def start(self) -> None:
        app = oidc_provider_mock.app(user_claims=self.users)  # a new app: a new signing key

        def counting(environ: dict[str, Any], start_response: Any) -> Any:
            self.served[environ["PATH_INFO"]] += 1
            return app(environ, start_response)

        self._server = werkzeug.serving.make_server("localhost", self.port, counting, threaded=True)
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def stop(self) -> None:
        assert self._server is not None and self._thread is not None
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def rotate_keys(self) -> None:
        self.stop()
        self.start()

    def id_token(self, sub: str, audience: str) -> str:
        """An ID token for ``sub``, through the provider's own authorization-code flow."""
        with httpx.Client(base_url=self.issuer, timeout=10) as http:
            query = {"client_id": audience, "redirect_uri": REDIRECT, "response_type": "code", "scope": "openid"}
            answer = http.post("/oauth2/authorize", params={**query, "state": "s"}, data={"sub": sub})
            assert answer.status_code == 302, answer.text
            code = parse_qs(urlparse(answer.headers["location"]).query)["code"][0]
            answer = http.post(
                "/oauth2/token",
                data={"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT},
                auth=(audience, "any-secret"),
            )
            assert answer.status_code == 200, answer.text
            return answer.json()["id_token"]


@contextmanager
def provider(users: list[oidc_provider_mock.User]) -> Iterator[Provider]:
    found = Provider(free_port(), users)
    found.start()
    try:
        yield found
    finally:
        found.stop()


@pytest.fixture
def people() -> Iterator[Provider]:
    with provider(PEOPLE) as found:
        yield found


@pytest.fixture
def ci() -> Iterator[Provider]:
    with provider(CI_JOBS) as found:
        yield found


def ci_entry(ci: Provider, **overrides: Any) -> dict[str, Any]:
    """What an operator writes for GitHub Actions (README), pointed at the test's provider."""
    return {
        "issuer": ci.issuer,
        "audience": CI_AUDIENCE,
        "kind": "workload",
        "groups_claim": None,
        "groups": ["ci"],
        "attributes": ["repository", "repository_owner", "ref", "ref_type", "workflow", "environment"],
        **overrides,
    }


@pytest.fixture
async def two_issuers(
    dev_env: WorkflowEnvironment, tmp_path: Path, people: Provider, ci: Provider
) -> AsyncIterator[Stack]:
    """People from one provider, CI jobs from another: both trusted at once, the dev issuer off.
    The people's entry comes from a YAML file, the workloads' from the JSON setting."""
    issuers_file = tmp_path / "issuers.yaml"
    issuers_file.write_text(
        f"issuers:\n  - issuer: {people.issuer}\n    audience: {PEOPLE_AUDIENCE}\n    algorithms: [RS256]\n"
    )
    async with running_stack(
        dev_env,
        tmp_path / "data",
        dev_identity=False,
        oidc_issuers_path=issuers_file,
        oidc_issuers=[ci_entry(ci)],
    ) as stack:
        yield stack


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def forged(issuer: str, audience: str, kid: str | None) -> str:
    """A well-formed token for a trusted issuer and audience, signed by a key it never published."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = int(time.time())
    claims = {"iss": issuer, "aud": audience, "sub": MAIN, "iat": now, "exp": now + 300, "ref": "refs/heads/main"}
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid} if kid else None)


def deploy(minutes: int = 10) -> dict[str, Any]:
    return {"resource": DEPLOY, "action": "write", "duration": f"{minutes}m", "reason": "deploy run 4242"}


# -- two issuers, a person and a workload -----------------------------------------------------------


async def test_a_person_and_a_workload_from_two_issuers(two_issuers: Stack, people: Provider, ci: Provider) -> None:
    http = two_issuers.http
    alice = bearer(people.id_token("alice", PEOPLE_AUDIENCE))
    main = bearer(ci.id_token(MAIN, CI_AUDIENCE))

    # The person: a User, her groups from her provider; her deploy waits for an SRE.
    filed = await http.post("/v1/requests", json=deploy(), headers=alice)
    assert filed.status_code == 201, filed.text
    assert (filed.json()["requester"], filed.json()["status"]) == ("alice", "pending")

    # The deploy pipeline on main: a Service, approved at once by the policy, for 10 minutes.
    filed = await http.post("/v1/requests", json=deploy(), headers=main)
    assert filed.status_code == 201, filed.text
    view = filed.json()
    assert (view["requester"], view["status"]) == (MAIN, "active"), view
    assert any("deploy-pipeline-writes" in r for r in view["policy_reasons"]), view["policy_reasons"]

    # Longer than the policy's 10 minutes: permitted by the test policies, but a person must approve.
    longer = await http.post("/v1/requests", json=deploy(minutes=20), headers=main)
    assert longer.status_code == 201, longer.text
    assert longer.json()["status"] == "pending"

    # The same pipeline from another branch is refused by the policy.
    branch = bearer(ci.id_token(BRANCH, CI_AUDIENCE))
    refused = await http.post("/v1/requests", json=deploy(), headers=branch)
    assert refused.status_code == 403, refused.text
    assert "workloads may ask only from the main branch" in refused.json()["error"]["message"]


async def test_a_token_for_the_other_issuers_audience_is_refused(
    two_issuers: Stack, people: Provider, ci: Provider
) -> None:
    # The CI provider's token minted for the people's audience: each issuer has its own audience.
    token = ci.id_token(MAIN, PEOPLE_AUDIENCE)
    answer = await two_issuers.http.get("/v1/catalog", headers=bearer(token))
    assert answer.status_code == 401, answer.text
    assert "another audience" in answer.json()["error"]["message"]


async def test_a_token_from_an_issuer_not_trusted_is_401(two_issuers: Stack) -> None:
    with provider(CI_JOBS) as stranger:  # a real provider, just not one of the trusted ones
        token = stranger.id_token(MAIN, CI_AUDIENCE)
    answer = await two_issuers.http.post("/v1/requests", json=deploy(), headers=bearer(token))
    assert answer.status_code == 401, answer.text
    assert "issuer this service does not trust" in answer.json()["error"]["message"]


# -- keys: rotation, unknown kids, a provider that is down ------------------------------------------


async def test_key_rotation_refreshes_once_and_random_kids_do_not_hammer_the_provider(
    two_issuers: Stack, ci: Provider
) -> None:
    http = two_issuers.http
    before = await http.get("/v1/catalog", headers=bearer(ci.id_token(MAIN, CI_AUDIENCE)))
    assert before.status_code == 200, before.text
    assert (ci.served["/.well-known/openid-configuration"], ci.served["/jwks"]) == (1, 1)

    # Same issuer, a new signing key with a new kid. The mock's tokens carry no kid: the
    # old key's failed signature is what makes the verifier look for a newer key.
    ci.rotate_keys()
    after = await http.get("/v1/catalog", headers=bearer(ci.id_token(MAIN, CI_AUDIENCE)))
    assert after.status_code == 200, after.text
    assert ci.served["/jwks"] == 2  # fetched again, once

    # Forged tokens with random kids, and without any: each one a 401, none a fetch
    # (the last refresh was less than jwks_refresh_min_s ago).
    for n in range(20):
        token = forged(ci.issuer, CI_AUDIENCE, uuid.uuid4().hex if n % 2 else None)
        answer = await http.get("/v1/catalog", headers=bearer(token))
        assert answer.status_code == 401, answer.text
        says = answer.json()["error"]["message"]
        assert says in ("identity token signature does not verify", KEY_NOT_PUBLISHED), says
    assert ci.served["/jwks"] == 2
    assert ci.served["/.well-known/openid-configuration"] == 1


async def test_an_issuer_whose_discovery_is_down_is_503_not_500(
    dev_env: WorkflowEnvironment, tmp_path: Path, ci: Provider
) -> None:
    down = f"http://localhost:{free_port()}"  # nothing listens there
    missing = f"{ci.issuer}/tenant-a"  # a live server, but no discovery document there (404)
    entries = [ci_entry(ci, issuer=down), ci_entry(ci, issuer=missing)]
    async with running_stack(dev_env, tmp_path / "data", dev_identity=False, oidc_issuers=entries) as stack:
        for issuer in (down, missing):
            token = forged(issuer, CI_AUDIENCE, "k1")
            answer = await stack.http.get("/v1/catalog", headers=bearer(token))
            assert answer.status_code == 503, answer.text
            assert answer.json()["error"]["message"] == (
                f"the keys of identity provider {issuer} cannot be fetched; try again shortly"
            )
            assert answer.headers["retry-after"]


# -- configuration ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "says"),
    [
        ({"issuer": "https://ci.example", "audience": "jit", "algorithms": ["HS256"]}, "refused: HS256"),
        ({"issuer": "https://ci.example"}, "audience"),
        ({"issuer": "ci.example", "audience": "jit"}, "must be an http(s) URL"),
        ({"issuer": "https://ci.example", "audience": "jit", "attributes": ["ref"]}, "kind workload"),
        ({"issuer": "https://ci.example", "audience": "jit", "kind": "workload", "attributes": ["a-b"]}, "a-b"),
        ({"issuer": "https://ci.example", "audience": "jit", "colour": "blue"}, "colour"),
    ],
)
def test_settings_refuse_a_bad_issuer_entry(entry: dict[str, Any], says: str) -> None:
    with pytest.raises(ValidationError) as raised:
        Settings(_env_file=None, oidc_issuers=[entry])  # type: ignore[call-arg]
    assert says in str(raised.value)


def test_settings_refuse_one_issuer_twice(tmp_path: Path) -> None:
    path = tmp_path / "issuers.json"
    path.write_text('{"issuers": [{"issuer": "https://idp.example", "audience": "b"}]}')
    with pytest.raises(ValidationError) as raised:
        Settings(  # type: ignore[call-arg]
            _env_file=None,
            oidc_issuer="https://idp.example",
            oidc_audience="a",
            oidc_jwks_url="https://idp.example/jwks",
            oidc_issuers_path=path,
        )
    assert "https://idp.example is configured twice" in str(raised.value)


def test_the_issuers_setting_reads_json_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "JIT_OIDC_ISSUERS",
        '[{"issuer": "https://token.actions.githubusercontent.com", "audience": "https://jit.example",'
        ' "kind": "workload", "attributes": {"repo": "repository"}}]',
    )
    (entry,) = Settings(_env_file=None).trusted_issuers  # type: ignore[call-arg]
    assert (entry.kind, entry.attributes, entry.jwks_url) == ("workload", {"repo": "repository"}, None)


# -- the example policies ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ref", "workflow", "outcome"),
    [
        pytest.param("refs/heads/main", "deploy", "auto-approved", id="main"),
        pytest.param("refs/heads/try-things", "deploy", "refused", id="another-branch"),
        pytest.param("refs/heads/main", "lint", "refused", id="another-workflow"),
    ],
)
def test_the_example_policies_approve_the_deploy_pipeline_from_main(ref: str, workflow: str, outcome: str) -> None:
    engine = load_engine(EXAMPLE_POLICIES, EXAMPLE_CATALOG)
    job = Actor(
        sub=f"repo:acme/deploy:ref:{ref}",
        kind="service",
        attributes={
            "issuer": "https://token.actions.githubusercontent.com",
            "repository": "acme/deploy",
            "ref": ref,
            "workflow": workflow,
        },
    )
    tuesday_noon = datetime(2026, 3, 3, 12, tzinfo=UTC)  # production writes are for business hours
    decision = engine.decide_request(
        job,
        resource=DEPLOY,
        action="write",
        duration_s=600,
        reason="deploy",
        ticket=None,
        break_glass=False,
        mfa=False,
        now=tuesday_noon,
    )
    got = "auto-approved" if decision.allowed and decision.auto_approve else "refused" if not decision.allowed else "?"
    assert got == outcome, decision.reasons
    # A person cannot pass for the pipeline: the same sub as a User is no Jit::Service.
    person = engine.decide_request(
        Actor(sub=job.sub, groups=["engineers"]),
        resource=DEPLOY,
        action="write",
        duration_s=600,
        reason="deploy",
        ticket=None,
        break_glass=False,
        mfa=False,
        now=tuesday_noon,
    )
    assert not person.allowed
