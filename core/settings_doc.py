"""The README's table of every ``JIT_*`` setting, generated from the settings class.

    python -m core.settings_doc           # print the table
    python -m core.settings_doc --write   # put it in README.md, between the markers

Names and defaults come from ``Settings``; a field's meaning from its ``Field(description=...)``
when it has one, else from ``_DOCS`` below, as does which process reads it.
tests/test_settings_doc.py fails when a setting has neither or when README.md's table is not
this script's output, so the table cannot drift from the class.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from pydantic.fields import FieldInfo

from core.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
START = "<!-- settings-table:start (python -m core.settings_doc --write) -->"
END = "<!-- settings-table:end -->"

API, WORKER, CLI, DEVSTACK = "API", "worker", "CLI", "devstack"

# name -> (who reads it, what it means). The CLI is `jit audit verify` (it opens the audit
# log and reads the anchors in Temporal); the rest of `jit` talks to the API over HTTP.
_DOCS: dict[str, tuple[tuple[str, ...], str]] = {
    "data_dir": ((API, WORKER, CLI, DEVSTACK), "keys, secrets and SQLite files made when not given by settings"),
    "catalog_path": ((API, WORKER, DEVSTACK), "the resource catalog (YAML)"),
    "policies_dir": ((API,), "the Cedar access policies"),
    "policy_check_interval_s": ((API,), "how often, at most, a request checks the policy files for changes"),
    "temporal_address": ((API, WORKER, CLI, DEVSTACK), "Temporal's frontend, `host:port`"),
    "temporal_namespace": ((API, WORKER, CLI), "the Temporal namespace"),
    "task_queue": ((API, WORKER, CLI), "the Temporal task queue the worker polls"),
    "temporal_tls": ((API, WORKER, CLI), "TLS to Temporal with the system's CAs"),
    "temporal_tls_ca_path": ((API, WORKER, CLI), "the CA of Temporal's server certificate"),
    "temporal_tls_cert_path": ((API, WORKER, CLI), "client certificate, for mutual TLS"),
    "temporal_tls_key_path": ((API, WORKER, CLI), "its private key"),
    "temporal_tls_server_name": ((API, WORKER, CLI), "the name to check in Temporal's certificate"),
    "temporal_api_key": ((API, WORKER, CLI), "an API key (Temporal Cloud), sent as a bearer token"),
    "dev_identity": ((API,), "accept the dev identity issuer's tokens and serve `/v1/dev/token` (`make run` only)"),
    "oidc_issuer": ((API,), "the identity provider's issuer"),
    "oidc_audience": ((API,), "the audience its identity tokens must carry"),
    "oidc_jwks_url": ((API,), "its public keys"),
    "oidc_groups_claim": ((API,), "the claim that lists a caller's groups"),
    "oidc_algorithms": ((API,), "signature algorithms accepted on identity tokens (asymmetric only)"),
    "oidc_issuers": ((API,), 'more trusted issuers, people or workloads: a JSON list (README "Identity")'),
    "oidc_issuers_path": ((API,), "the same list in a YAML or JSON file"),
    "admin_groups": ((API,), "groups snapshotted into each request: may revoke any grant, review break-glass"),
    "token_issuer": ((API,), "`iss` of the access tokens the API mints"),
    "token_ttl_s": ((API,), "access token lifetime, seconds"),
    "token_algorithm": ((API,), "access token signature algorithm (`RS256`, `ES256`, `EdDSA`)"),
    "signing_key_pem": ((API,), "signing keys, PEM private keys (else `JIT_SIGNING_KEYS_PATH`, else the data dir)"),
    "signing_keys_path": ((API,), "a directory of `*.pem` signing keys (a mounted secret)"),
    "signing_key_id": ((API,), "the kid that signs (else the newest key of `JIT_TOKEN_ALGORITHM`)"),
    "pg_password_secret": ((API, WORKER), "key deriving provisioned database passwords; API and worker must share it"),
    "codec_keys": ((API, WORKER, CLI), "payload encryption keys, `kid:base64key,...`, the last encrypts"),
    "codec_cors_origin": ((API,), "the Temporal UI origin allowed to call the codec endpoint"),
    "introspection_cache_s": (
        (API,),
        "how old a grant row introspection answers from may be (a revoke elsewhere is seen within it; at most 1 s)",
    ),
    "database_url": ((API, WORKER, CLI), "PostgreSQL for the grant store and the audit log (else SQLite files)"),
    "audit_log_dsn": ((API, WORKER, CLI), "PostgreSQL DSN of the audit log (else `audit.sqlite3` in the data dir)"),
    "audit_anchor_interval_s": ((WORKER,), "how often the audit log's head is anchored in Temporal"),
    "reconcile_interval_s": ((WORKER,), "how often access left by a workflow ended outside jit-access is revoked"),
    "log_format": ((API, WORKER), "`json` (one object a line) or `text`"),
    "log_level": ((API, WORKER), "the log level"),
    "worker_metrics_host": ((WORKER,), "the worker's metrics address"),
    "worker_metrics_port": ((WORKER, DEVSTACK), "the worker's metrics port (0: none)"),
    "worker_max_cached_workflows": ((WORKER,), "requests kept in the worker's memory (at least 3)"),
    "worker_sandbox_passthrough": ((WORKER,), "import workflow modules once per process, not once per request"),
    "worker_sticky_timeout_s": ((WORKER,), "how long a task waits for the worker that ran the request last"),
    "worker_graceful_shutdown_s": ((WORKER,), "on SIGTERM, how long running activities may finish"),
    "max_body_bytes": ((API,), "larger request bodies get 413 unread"),
    "codec_cookie_always_secure": ((API,), "codec sign-in cookie always `Secure` (else when the request was https)"),
    "notifications_path": ((API, WORKER), "notification channels and routes (YAML); none when unset"),
    "public_url": ((API, WORKER), "this API as people reach it: links in notifications"),
    "notify_concurrency": (
        (WORKER,),
        "notifications a worker sends at once, on threads of their own (never the lifecycle's)",
    ),
    "ui_oidc_client_id": ((API,), "the web page's OIDC client id"),
    "ui_oidc_client_secret": ((API,), "its client secret"),
    "ui_oidc_scopes": ((API,), "the scopes the web page asks for"),
    "ui_session_secret": ((API,), "signs the web page's session cookie; all API replicas must share it"),
    "ui_session_idle_s": ((API,), "a web session ends after this long without a request"),
    "ui_session_max_s": ((API,), "and this long after sign-in, whatever happens"),
    "max_duration_s": ((API,), "ceiling on any grant's duration, whatever the catalog says"),
    "settle_wait_s": ((API,), "how long `POST /v1/requests` waits for an auto-approved grant"),
}


def is_secret(field: FieldInfo) -> bool:
    return field.repr is False


def _default(name: str, field: FieldInfo) -> str:
    if is_secret(field):
        return "*(secret)*"
    value: Any = field.get_default(call_default_factory=True)
    if value is None:
        return "unset"
    if isinstance(value, Path):
        value = value.relative_to(ROOT).as_posix() if value.is_relative_to(ROOT) else value.as_posix()
    elif isinstance(value, bool):
        value = str(value).lower()
    elif isinstance(value, float):
        value = f"{value:g}"
    elif isinstance(value, list):
        value = json.dumps(value)
    return f"`{value}`"


def _doc(name: str, field: FieldInfo) -> tuple[str, str]:
    readers, meaning = _DOCS.get(name, ((), ""))
    extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
    meaning = field.description or meaning
    readers = tuple(extra.get("read_by", readers))  # type: ignore[arg-type]
    if not meaning or not readers:
        raise KeyError(
            f"JIT_{name.upper()} is undocumented: give it Field(description=..., "
            f"json_schema_extra={{'read_by': [...]}}) or an entry in core/settings_doc.py"
        )
    return ", ".join(readers), meaning.replace("|", "\\|")


def table(settings_class: type[Settings] = Settings) -> str:
    rows = ["| setting | default | read by | meaning |", "|---|---|---|---|"]
    for name, field in settings_class.model_fields.items():
        readers, meaning = _doc(name, field)
        rows.append(f"| `JIT_{name.upper()}` | {_default(name, field)} | {readers} | {meaning} |")
    return "\n".join(rows) + "\n"


def readme_table(text: str) -> str:
    """What README.md has between the markers."""
    try:
        _, rest = text.split(START + "\n", 1)
        body, _ = rest.split(END, 1)
    except ValueError:
        raise ValueError(f"README.md has no {START} ... {END} markers") from None
    return body


def write_readme(path: Path = README) -> bool:
    """Put the table in README.md; True when it changed."""
    text = path.read_text()
    old = readme_table(text)
    new = table()
    if old == new:
        return False
    path.write_text(text.replace(START + "\n" + old + END, START + "\n" + new + END, 1))
    return True


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        print("README.md updated" if write_readme() else "README.md already up to date")
    else:
        sys.stdout.write(table())
