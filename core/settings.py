"""All configuration, from ``JIT_*`` environment variables (or a ``.env`` file)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="JIT_", env_file=".env", extra="ignore")

    data_dir: Path = Path(".data")
    catalog_path: Path = Path("config/catalog.yaml")

    temporal_address: str = "localhost:7233"
    temporal_namespace: str = "default"
    task_queue: str = "jit-access"

    # Identity of callers. The dev issuer signs with a key in the data dir and
    # is accepted only when explicitly switched on (`make run` does).
    dev_identity: bool = False
    oidc_issuer: str | None = None
    oidc_audience: str | None = None
    oidc_jwks_url: str | None = None
    oidc_groups_claim: str = "groups"
    oidc_algorithms: list[str] = Field(default_factory=lambda: ["RS256", "ES256", "EdDSA"])

    # Who may do what beyond the catalog's approver groups.
    admin_groups: list[str] = Field(default_factory=lambda: ["jit-admins"])
    auditor_groups: list[str] = Field(default_factory=lambda: ["auditors"])
    introspect_groups: list[str] = Field(default_factory=lambda: ["resource-servers"])

    # Access tokens issued to requesters.
    token_issuer: str = "http://localhost:8000"
    token_ttl_s: int = Field(default=300, gt=0)
    signing_key_pem: str | None = None  # else generated once under data_dir

    max_duration_s: int = 7 * 24 * 3600  # hard ceiling whatever the catalog says
    settle_wait_s: float = 10.0  # how long POST waits for an auto-approved grant

    @property
    def signing_keys_dir(self) -> Path:
        return self.data_dir / "signing-keys"

    @property
    def dev_identity_key_path(self) -> Path:
        return self.data_dir / "dev-identity-key.pem"

    @property
    def grants_db_path(self) -> Path:
        return self.data_dir / "grants.sqlite3"


@lru_cache
def get_settings() -> Settings:
    return Settings()
