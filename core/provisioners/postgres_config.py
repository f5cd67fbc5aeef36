"""The PostgreSQL provisioner's catalog settings, role names and derived passwords.

Pure (no database call), so the API can answer the credentials call with it:
with ``host``, ``port`` and ``dbname`` in the catalog it needs no admin DSN.

Catalog block (every key but ``dsn_env`` and ``tables`` optional)::

    provisioner:
      type: postgres
      dsn_env: JIT_PG_ORDERS_DSN     # env var holding the admin DSN; never the DSN itself
      tables: [public.orders, {schema: public, table: customers, columns: [id, name]}]
      privileges: {read: [SELECT], write: [SELECT, INSERT, UPDATE, DELETE]}
      connection_limit: 5
      host: db.internal              # what requesters connect to, if not the DSN's host
      port: 5432
      dbname: orders

The password is derived, never stored: HMAC(secret, request id). A retried
grant sets the same one, the API recomputes it, and it never enters Temporal
history.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from psycopg.conninfo import conninfo_to_dict
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from core.provisioners.errors import ProvisionerConfigError, parse_block

ROLE_PREFIX = "jit_"
PASSWORD_SECRET_FILE = "pg-password.key"  # noqa: S105 (a file name)
_PRIVILEGES = {"SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER"}
_COLUMN_PRIVILEGES = {"SELECT", "INSERT", "UPDATE", "REFERENCES"}
DEFAULT_PRIVILEGES = {"read": ["SELECT"], "write": ["SELECT", "INSERT", "UPDATE", "DELETE"]}
_ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"


class TableRef(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    schema_name: str = Field(default="public", alias="schema", min_length=1)
    table: str = Field(min_length=1)
    columns: list[str] | None = Field(default=None, min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: Any) -> Any:
        # "schema.table" or "table"; names containing dots need the mapping form.
        if isinstance(value, str):
            schema, _, table = value.rpartition(".")
            return {"schema": schema or "public", "table": table}
        return value


class PostgresSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["postgres"] = "postgres"
    dsn_env: str = Field(pattern=_ENV_NAME)
    tables: list[TableRef] = Field(min_length=1)
    privileges: dict[str, list[str]] = Field(default_factory=lambda: dict(DEFAULT_PRIVILEGES))
    connection_limit: int = Field(default=5, ge=1, le=1000)
    host: str | None = None
    port: int | None = None
    dbname: str | None = None

    @field_validator("privileges")
    @classmethod
    def _known_privileges(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        # Privileges become SQL keywords, so only this allowlist can reach a statement.
        out = {action: sorted({p.upper() for p in privs}) for action, privs in value.items()}
        for action, privs in out.items():
            if not privs or not set(privs) <= _PRIVILEGES:
                raise ValueError(f"action {action!r}: privileges must be a non-empty subset of {sorted(_PRIVILEGES)}")
        return out

    def privileges_for(self, action: str) -> list[str]:
        privileges = self.privileges.get(action)
        if not privileges:
            raise ProvisionerConfigError(f"postgres provisioner: no privileges configured for action {action!r}")
        # DELETE, TRUNCATE, TRIGGER exist only per table: on a column-restricted
        # table they would quietly reach every column.
        table_level = set(privileges) - _COLUMN_PRIVILEGES
        if table_level and any(t.columns for t in self.tables):
            raise ProvisionerConfigError(
                f"postgres provisioner: action {action!r} needs {sorted(table_level)}, "
                "which cannot be limited to columns"
            )
        return privileges


def parse_settings(settings: Mapping[str, Any]) -> PostgresSettings:
    return parse_block("postgres", PostgresSettings, settings)


# -- names and secrets (pure: the API uses these without a database) ---------


def role_prefix(request_id: str) -> str:
    """``jit_<12 hex>_``: every role of the request starts so, whoever requested it."""
    try:
        tag = uuid.UUID(request_id).hex[:12]
    except ValueError:
        tag = hashlib.sha256(request_id.encode()).hexdigest()[:12]
    return f"{ROLE_PREFIX}{tag}_"


def role_name(request_id: str, requester: str) -> str:
    # Lower-case ASCII only, so the name needs no quoting in psql; readable in pg_stat_activity.
    prefix = role_prefix(request_id)
    who = re.sub(r"[^a-z0-9]+", "_", requester.lower()).strip("_") or "user"
    return prefix + who[: 63 - len(prefix)].rstrip("_")


def derive_password(secret: bytes, request_id: str) -> str:
    digest = hmac.new(secret, b"pg-password:" + request_id.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode()[:32]


def scram_verifier(password: str, *, iterations: int = 4096) -> str:
    """The SCRAM-SHA-256 verifier PostgreSQL stores (RFC 5802/7677); a fresh salt each time."""
    salt = os.urandom(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    stored = hashlib.sha256(hmac.new(salted, b"Client Key", hashlib.sha256).digest()).digest()
    server = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    b64 = base64.b64encode
    return f"SCRAM-SHA-256${iterations}:{b64(salt).decode()}${b64(stored).decode()}:{b64(server).decode()}"


def load_password_secret(data_dir: Path, configured: str | None = None) -> bytes:
    """The HMAC key behind every derived password: a setting, else a file made once (0600).

    Worker and API must share it. The file is written aside and hard-linked
    into place, so concurrent first starts agree on one secret.
    """
    if configured:
        return configured.encode()
    path = data_dir / PASSWORD_SECRET_FILE
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = data_dir / f".{PASSWORD_SECRET_FILE}.{uuid.uuid4().hex}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(base64.urlsafe_b64encode(os.urandom(32)).decode())
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another process won the race: use its secret
        finally:
            tmp.unlink()
    return path.read_text().strip().encode()


def admin_dsn(cfg: PostgresSettings, environ: Mapping[str, str]) -> str:
    dsn = environ.get(cfg.dsn_env)
    if not dsn:
        raise ProvisionerConfigError(f"environment variable {cfg.dsn_env} (the admin DSN) is not set")
    return dsn


def credentials_for(
    request_id: str,
    settings: Mapping[str, Any],
    *,
    requester: str,
    secret: bytes,
    environ: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """What the requester connects with. Pure: no database call, and with host,
    port and dbname in the catalog the API needs no admin DSN either."""
    cfg = parse_settings(settings)
    if cfg.host and cfg.dbname:
        dsn: dict[str, Any] = {}
    else:
        dsn = conninfo_to_dict(admin_dsn(cfg, os.environ if environ is None else environ))
    return {
        "username": role_name(request_id, requester),
        "password": derive_password(secret, request_id),
        "host": cfg.host or dsn.get("host") or "localhost",
        "port": int(cfg.port or dsn.get("port") or 5432),
        "dbname": cfg.dbname or dsn.get("dbname"),
    }
