"""The OIDC issuers whose identity tokens the API trusts, and how each one's claims map to a caller.

Configured in core/settings.py: the single-issuer ``JIT_OIDC_*`` settings make one
entry, ``JIT_OIDC_ISSUERS`` (JSON) and ``JIT_OIDC_ISSUERS_PATH`` (a YAML or JSON
file) add more. An entry of kind ``workload`` (a CI system: GitHub Actions, GitLab
CI) makes its callers Cedar ``Jit::Service`` principals with the claims it names as
attributes (README "Identity: several issuers, and workloads").
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

# Identity tokens are verified with the provider's public keys: never a shared secret, never "none".
ASYMMETRIC = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"})
DEFAULT_ALGORITHMS = ["RS256", "ES256", "EdDSA"]
# A Cedar attribute name: what `principal.<name>` can spell.
_ATTRIBUTE = r"^[A-Za-z_][A-Za-z0-9_]*$"


class ClaimMapping(BaseModel):
    """How a verified token's claims become the caller (an ``Actor``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["person", "workload"] = "person"
    subject_claim: str = Field(default="sub", min_length=1)
    # A list of strings in the token; absent means no groups. None: never read.
    groups_claim: str | None = "groups"
    # Groups every caller from this issuer is in (say "ci"), whatever the token says.
    groups: list[str] = Field(default_factory=list)
    # acr values that mean a second factor (amr mfa/otp/hwk always do); None: the usual ones.
    mfa_acr_values: list[str] | None = None
    # Workloads: Cedar attribute name -> claim (a list means the same names). The
    # attribute must be declared on Jit::Service in schema.cedarschema to be usable.
    attributes: dict[str, str] = Field(default_factory=dict)

    @field_validator("attributes", mode="before")
    @classmethod
    def _same_names(cls, value: Any) -> Any:
        return {name: name for name in value} if isinstance(value, list) else value

    @field_validator("attributes")
    @classmethod
    def _cedar_names(cls, value: dict[str, str]) -> dict[str, str]:
        bad = [name for name in value if not re.match(_ATTRIBUTE, name)]
        if bad:
            raise ValueError(f"attribute names must be Cedar identifiers (letters, digits, _): {', '.join(bad)}")
        if "issuer" in value:
            raise ValueError("the attribute 'issuer' is always the token's iss; map the claim to another name")
        return value

    @model_validator(mode="after")
    def _attributes_for_workloads(self) -> ClaimMapping:
        if self.attributes and self.kind != "workload":
            raise ValueError("attributes are for issuers of kind workload (people are Jit::User, without attributes)")
        if self.groups_claim is not None and not self.groups_claim.strip():
            raise ValueError("groups_claim must not be empty (leave it out, or null, for none)")
        return self


class OidcIssuer(ClaimMapping):
    """One trusted issuer: where its keys are, what audience and algorithms its tokens must have."""

    issuer: str = Field(min_length=1)
    # Tokens minted for another application of the same provider are refused.
    audience: str = Field(min_length=1)
    # Else found by OIDC discovery: <issuer>/.well-known/openid-configuration -> jwks_uri.
    jwks_url: str | None = None
    algorithms: list[str] = Field(default_factory=lambda: list(DEFAULT_ALGORITHMS))
    # Keys are fetched again after this long; on a token whose kid is unknown, at
    # once, but at most once per jwks_refresh_min_s (random kids cannot hammer the provider).
    jwks_cache_s: float = Field(default=300.0, gt=0)
    jwks_refresh_min_s: float = Field(default=30.0, ge=0)

    @field_validator("issuer", "jwks_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("https://", "http://")):
            raise ValueError("must be an http(s) URL")
        return value

    @field_validator("algorithms")
    @classmethod
    def _asymmetric(cls, value: list[str]) -> list[str]:
        unsafe = [a for a in value if a not in ASYMMETRIC]
        if unsafe or not value:
            raise ValueError(
                f"may list only asymmetric algorithms ({', '.join(sorted(ASYMMETRIC))}); "
                f"refused: {', '.join(unsafe) or 'an empty list'}"
            )
        return value

    @property
    def discovery_url(self) -> str:
        return self.issuer.rstrip("/") + "/.well-known/openid-configuration"


def load_issuers_file(path: Path) -> list[OidcIssuer]:
    """``issuers:`` (a list of entries) from a YAML or JSON file; errors name the file and the entry."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as e:
        raise ValueError(f"JIT_OIDC_ISSUERS_PATH {path}: cannot be read ({e.strerror})") from e
    except yaml.YAMLError as e:
        raise ValueError(f"JIT_OIDC_ISSUERS_PATH {path}: not YAML or JSON: {e}") from e
    entries = data.get("issuers") if isinstance(data, dict) else data
    if not isinstance(entries, list):
        raise ValueError(f"JIT_OIDC_ISSUERS_PATH {path}: expected a list under 'issuers:'")
    return parse_issuers(entries, f"JIT_OIDC_ISSUERS_PATH {path}")


def parse_issuers(entries: Any, where: str) -> list[OidcIssuer]:
    if isinstance(entries, str):
        try:
            entries = json.loads(entries)
        except json.JSONDecodeError as e:
            raise ValueError(f"{where}: not JSON: {e}") from e
    if not isinstance(entries, list):
        raise ValueError(f"{where}: expected a list of issuers")
    found: list[OidcIssuer] = []
    for n, entry in enumerate(entries):
        if isinstance(entry, OidcIssuer):
            found.append(entry)
            continue
        try:
            found.append(OidcIssuer.model_validate(entry))
        except ValidationError as e:
            problems = "; ".join(f"{'.'.join(map(str, err['loc'])) or 'entry'}: {err['msg']}" for err in e.errors())
            raise ValueError(f"{where}: issuer #{n + 1}: {problems}") from None
    return found
