"""All configuration, from ``JIT_*`` environment variables (or a ``.env`` file)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, PrivateAttr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.oidc_issuers import OidcIssuer, load_issuers_file

# The default catalog and policies ship with the code: config/ beside core/, in the source
# tree as in the installed wheel (a package there, see pyproject.toml). Found from this file,
# not from the working directory, and without importing a module named "config", which a
# config.py in the directory the program starts from would shadow.
DEFAULT_CONFIG_DIR = Path(__file__).resolve().parent.parent / "config"

# Identity tokens are verified with the provider's public keys: never a shared secret, never "none".
_ASYMMETRIC = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"})


class Settings(BaseSettings):
    # hide_input_in_errors: a start-up error must not print the environment (the signing key PEM may be in it).
    model_config = SettingsConfigDict(env_prefix="JIT_", env_file=".env", extra="ignore", hide_input_in_errors=True)

    data_dir: Path = Path(".data")
    catalog_path: Path = DEFAULT_CONFIG_DIR / "catalog.yaml"
    # The Cedar access policies (config/policies/README.md). The API reloads them on
    # SIGHUP, and when their files change (checked at most this often, on a request).
    policies_dir: Path = DEFAULT_CONFIG_DIR / "policies"
    policy_check_interval_s: float = Field(default=1.0, ge=0)

    temporal_address: str = "localhost:7233"
    temporal_namespace: str = "default"
    task_queue: str = "jit-access"
    # A Temporal cluster behind TLS (README "Running beyond one machine"): on with any of
    # these. The CA that signed the server's certificate (else the system's), a client
    # certificate and key for mutual TLS, the server name to check when the address is
    # not it. Temporal Cloud: an API key (sent as a bearer token; TLS with the system CAs).
    temporal_tls: bool = False
    temporal_tls_ca_path: Path | None = None
    temporal_tls_cert_path: Path | None = None
    temporal_tls_key_path: Path | None = None
    temporal_tls_server_name: str | None = None
    temporal_api_key: str | None = Field(default=None, repr=False)

    # Identity of callers. The dev issuer signs with a key in the data dir and
    # is accepted only when explicitly switched on (`make run` does).
    dev_identity: bool = False
    oidc_issuer: str | None = None
    oidc_audience: str | None = None
    oidc_jwks_url: str | None = None
    oidc_groups_claim: str = "groups"
    oidc_algorithms: list[str] = Field(default_factory=lambda: ["RS256", "ES256", "EdDSA"])
    # More trusted issuers, people's or workloads' (CI jobs), each with its own audience,
    # algorithms and claim mapping (core/oidc_issuers.py, README "Identity"): a JSON list
    # here, and/or a YAML or JSON file (``issuers:``). The JIT_OIDC_ISSUER settings above
    # make one more entry. Keys by discovery unless an entry gives jwks_url.
    oidc_issuers: list[OidcIssuer] = Field(default_factory=list)
    oidc_issuers_path: Path | None = None
    _file_issuers: list[OidcIssuer] = PrivateAttr(default_factory=list)

    # Who audits, introspects and revokes others' grants is the policies' word
    # (config/policies/admin.cedar). These groups are snapshotted into each request:
    # the workflow lets them revoke any grant, and they review a break-glass grant
    # on a resource without approval stages.
    admin_groups: list[str] = Field(default_factory=lambda: ["jit-admins"])
    # Only the codec endpoint (api/routes/codec.py) still reads this; the API asks
    # the policies (Cedar ``audit``) everywhere else.

    # Access tokens issued to requesters.
    token_issuer: str = "http://localhost:8000"  # noqa: S105
    token_ttl_s: int = Field(default=300, gt=0)
    # Their signing keys (core/keys.py): one or more PEM private keys in JIT_SIGNING_KEY_PEM,
    # else the *.pem files of JIT_SIGNING_KEYS_PATH (a mounted secret), else made once under
    # data_dir. All are published in the JWKS; JIT_SIGNING_KEY_ID (a kid) signs, else the
    # newest key of JIT_TOKEN_ALGORITHM. RS256 by default: the one algorithm every resource-
    # server library tried accepts in its default configuration (docs/benchmarks.md, "Token
    # algorithms"); RFC 9068 requires RS256 of them.
    token_algorithm: Literal["RS256", "ES256", "EdDSA"] = "RS256"  # noqa: S105 - an algorithm name
    signing_key_pem: str | None = Field(default=None, repr=False)
    signing_keys_path: Path | None = None
    signing_key_id: str | None = None

    # Provisioning. Database passwords are derived (HMAC of the request id) with
    # this key, so they are never stored nor put in history; else a key file
    # made once under data_dir. Worker and API must share it.
    pg_password_secret: str | None = Field(default=None, repr=False)
    # Payload encryption for Temporal history: "kid:base64key,..." (last one
    # encrypts), else keys made once under data_dir/codec-keys.
    codec_keys: str | None = Field(default=None, repr=False)
    # The Temporal UI origin allowed to call the codec endpoint (CORS).
    codec_cors_origin: str = "http://localhost:8233"

    # Shared state (README "Running beyond one machine"): the grant store and the audit
    # log in this PostgreSQL database (postgresql://user:password@host/db) instead of
    # SQLite files in the data dir. It holds a password: never logged nor shown.
    database_url: str | None = Field(default=None, repr=False)
    # The audit log (README "Audit"): a SQLite file in the data dir, or PostgreSQL
    # (JIT_DATABASE_URL). This DSN, older, puts the audit log alone in PostgreSQL,
    # or in another database than the grant store; it wins over JIT_DATABASE_URL.
    audit_log_dsn: str | None = Field(default=None, repr=False)
    # How often the worker's Temporal Schedule anchors the log's head in Temporal
    # (core/audit_anchors.py): records newer than the last anchor can still be
    # cut off unnoticed for up to this long.
    audit_anchor_interval_s: float = Field(default=300.0, gt=0)
    # How often the reconciler (workflows/reconciler.py) looks for access whose
    # request's workflow ended outside jit-access (terminated in Temporal UI):
    # such access outlives its end by at most this long.
    reconcile_interval_s: float = Field(default=60.0, gt=0)

    # Operations (README "Operations"). Logs: one JSON object a line, or "text" for
    # people (make run). The worker serves its metrics, the project's and the
    # Temporal SDK's, on this port (0: none); the API serves its own on /metrics.
    log_format: Literal["json", "text"] = "json"
    log_level: str = "INFO"
    worker_metrics_host: str = "0.0.0.0"  # noqa: S104 - a scrape target, as exporters are
    worker_metrics_port: int = Field(default=9464, ge=0, lt=65536)
    # Worker tuning: docs/benchmarks.md ("Worker settings") has the figures behind
    # each default. Requests kept in the worker's memory; past this many, an idle
    # one is evicted and replayed from its history when its next event comes.
    # At least 3: the worker runs at most (this - 1) workflow tasks at once, so a
    # slot is always free for a query's replay. With no free slot (0 or a full
    # cache), the SDK evicts a request in the middle of its local activities,
    # and it stalls until its task times out (worker.py, workflow_task_slots).
    worker_max_cached_workflows: int = Field(default=1000, ge=3)
    # Import the workflow's modules once, not once per request (see worker.py).
    worker_sandbox_passthrough: bool = True
    # How long a task waits for the worker that ran the request last before any
    # worker may take it: after a crash, the wait every running request pays.
    worker_sticky_timeout_s: float = Field(default=10.0, gt=0)
    # On SIGTERM the worker stops polling and lets its running activities finish for up to
    # this long before cancelling them (they are then retried elsewhere). Keep it below the
    # orchestrator's kill delay (docker-compose.yml stop_grace_period).
    worker_graceful_shutdown_s: float = Field(default=20.0, ge=0)

    # Introspection answers from a grant row read within this long (api/recent_grants.py):
    # a revoke made through another API replica (or by the worker) is seen by this one
    # within it; a revoke through this API and every expiry at once. 0: read every time.
    introspection_cache_s: float = Field(default=0.5, ge=0, le=1)

    # Request bodies larger than this are refused with 413 before they are read
    # (api/body_limit.py), on every endpoint, signed in or not. The largest body
    # the API takes is a codec batch from Temporal UI; 64 KiB holds many.
    max_body_bytes: int = Field(default=64 * 1024, gt=0)
    # The codec sign-in cookie is Secure whenever the request came over https. Behind
    # a TLS-terminating proxy the scheme is X-Forwarded-Proto, believed only from the
    # proxies uvicorn trusts (--forwarded-allow-ips / FORWARDED_ALLOW_IPS, default
    # 127.0.0.1). True: always Secure, whatever the request says.
    codec_cookie_always_secure: bool = False

    # Notifications (README "Notifications"): the channels and routes file, none when
    # unset (`make run` sets config/notifications.yaml: everything to its console).
    # Links in messages point under public_url (this API, as people reach it).
    # Deliveries send on threads of their own (notify_concurrency at once per worker):
    # a channel that hangs never holds a thread that a grant's revocation needs.
    notifications_path: Path | None = None
    public_url: str = "http://localhost:8000"
    notify_concurrency: int = Field(default=8, ge=1, le=256)

    # The web page (api/ui/, README "Web page"): an OIDC client of JIT_OIDC_ISSUER (the
    # authorization-code flow with PKCE); its secret from the environment only. The session
    # cookie is signed with ui_session_secret, else a key made once under data_dir (all API
    # replicas must share it). A session ends after ui_session_idle_s without a request, and
    # ui_session_max_s after sign-in whatever happens.
    ui_oidc_client_id: str | None = None
    ui_oidc_client_secret: str | None = Field(default=None, repr=False)
    ui_oidc_scopes: str = "openid profile email"
    ui_session_secret: str | None = Field(default=None, repr=False)
    ui_session_idle_s: int = Field(default=30 * 60, gt=0)
    ui_session_max_s: int = Field(default=8 * 3600, gt=0)

    max_duration_s: int = 7 * 24 * 3600  # hard ceiling whatever the catalog says
    settle_wait_s: float = 10.0  # how long POST waits for an auto-approved grant

    @model_validator(mode="after")
    def _check_oidc(self) -> Settings:
        oidc = {
            "JIT_OIDC_ISSUER": self.oidc_issuer,
            "JIT_OIDC_AUDIENCE": self.oidc_audience,
            "JIT_OIDC_JWKS_URL": self.oidc_jwks_url,
        }
        missing = [name for name, value in oidc.items() if not value]
        if len(missing) not in (0, len(oidc)):
            # An issuer without an audience would accept tokens minted for any other
            # application of the same provider; without a JWKS URL nothing verifies.
            raise ValueError(
                f"OIDC is half configured: {', '.join(missing)} not set; "
                "set JIT_OIDC_ISSUER, JIT_OIDC_AUDIENCE and JIT_OIDC_JWKS_URL together"
            )
        if self.oidc_jwks_url and not self.oidc_jwks_url.startswith(("https://", "http://")):
            raise ValueError("JIT_OIDC_JWKS_URL must be an http(s) URL")
        unsafe = [a for a in self.oidc_algorithms if a not in _ASYMMETRIC]
        if unsafe or not self.oidc_algorithms:
            raise ValueError(
                f"JIT_OIDC_ALGORITHMS may list only asymmetric algorithms ({', '.join(sorted(_ASYMMETRIC))}); "
                f"refused: {', '.join(unsafe) or 'an empty list'}"
            )
        if (self.temporal_tls_cert_path is None) != (self.temporal_tls_key_path is None):
            raise ValueError(
                "mutual TLS needs both JIT_TEMPORAL_TLS_CERT_PATH and JIT_TEMPORAL_TLS_KEY_PATH (or neither)"
            )
        if not self.oidc_groups_claim.strip():
            raise ValueError("JIT_OIDC_GROUPS_CLAIM must not be empty")
        if self.oidc_issuers_path is not None:
            self._file_issuers = load_issuers_file(self.oidc_issuers_path)
        seen: set[str] = set()
        for entry in self.trusted_issuers:
            # Tokens are matched to their entry by iss: two entries for one issuer would be ambiguous.
            if entry.issuer in seen:
                raise ValueError(f"OIDC issuer {entry.issuer} is configured twice; give each issuer one entry")
            seen.add(entry.issuer)
        return self

    @property
    def trusted_issuers(self) -> list[OidcIssuer]:
        """Every OIDC issuer whose tokens identify callers: JIT_OIDC_ISSUER's first, then the list's."""
        single = []
        if self.oidc_issuer and self.oidc_audience and self.oidc_jwks_url:
            single.append(
                OidcIssuer(
                    issuer=self.oidc_issuer,
                    audience=self.oidc_audience,
                    jwks_url=self.oidc_jwks_url,
                    algorithms=self.oidc_algorithms,
                    groups_claim=self.oidc_groups_claim,
                )
            )
        return single + list(self.oidc_issuers) + self._file_issuers

    @property
    def temporal_uses_tls(self) -> bool:
        return bool(
            self.temporal_tls
            or self.temporal_tls_ca_path
            or self.temporal_tls_cert_path
            or self.temporal_tls_server_name
            or self.temporal_api_key
        )

    @property
    def signing_keys_dir(self) -> Path:
        return self.data_dir / "signing-keys"

    @property
    def dev_identity_key_path(self) -> Path:
        return self.data_dir / "dev-identity-key.pem"

    @property
    def codec_keys_dir(self) -> Path:
        return self.data_dir / "codec-keys"

    @property
    def audit_log_path(self) -> Path:
        return self.data_dir / "audit.sqlite3"

    @property
    def ui_session_key_path(self) -> Path:
        return self.data_dir / "ui-session-key"

    @property
    def audit_dsn(self) -> str | None:
        """Where the audit log is in PostgreSQL, if it is: JIT_AUDIT_LOG_DSN, else JIT_DATABASE_URL."""
        return self.audit_log_dsn or self.database_url

    @property
    def grants_db_path(self) -> Path:
        return self.data_dir / "grants.sqlite3"


@lru_cache
def get_settings() -> Settings:
    return Settings()
