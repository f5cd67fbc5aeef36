"""PostgreSQL: one LOGIN role per request, granted exactly the catalog's tables, dropped on revoke.

Settings, role names and passwords are in ``postgres_config`` (pure, shared
with the API). The admin role of ``dsn_env`` needs CREATEROLE, membership in
``pg_signal_backend`` and the grant option on the tables, schemas and
database (ownership gives it).

Every identifier reaches SQL through ``sql.Identifier`` and every value
through ``sql.Literal`` or a parameter, so hostile table or user names cannot
escape. The role is created with a SCRAM verifier computed here, so not even
the server's statement log sees the password.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

from activities.provisioners.base import GrantOutcome, GrantSpec, Heartbeat, RevokeOutcome, no_heartbeat
from core import provisioners
from core.provisioners.errors import GrantGoneError, ProvisionerError, RevokedBeforeGrantError
from core.provisioners.postgres_config import (
    ROLE_PREFIX,
    admin_dsn,
    credentials_for,
    derive_password,
    parse_settings,
    role_name,
    role_prefix,
    scram_verifier,
)

__all__ = ["PostgresProvisioner", "credentials_for"]

# pg_terminate_backend waits this long for each session to be gone.
_TERMINATE_WAIT_MS = 5000

# -- the provisioner ---------------------------------------------------------

_SESSIONS = sql.SQL(
    # Sessions of the request's roles anywhere, and sessions in this database
    # whose role was dropped under them (usename is NULL then): a role must
    # never be dropped with sessions open, but if someone did, they go too.
    # Only pid, usesysid, usename and datname: an admin without
    # pg_read_all_stats sees other roles' sessions with backend_type, state
    # and query NULL, so a filter on those would find none of them.
    "FROM pg_stat_activity WHERE pid <> pg_backend_pid() "
    "AND (starts_with(usename, {prefix}) OR (datname = current_database() AND usesysid IS NOT NULL "
    "AND NOT EXISTS (SELECT 1 FROM pg_roles r WHERE r.oid = usesysid)))"
)


# The comment every role gets at creation (grant): "jit-access request <id>: ...".
_NOTE = re.compile(r"^jit-access request ([A-Za-z0-9-]{1,64}):")


class PostgresProvisioner:
    name = provisioners.POSTGRES

    def __init__(
        self,
        settings: Mapping[str, Any],
        *,
        secret: bytes,
        environ: Mapping[str, str] | None = None,
        is_revoked: Callable[[str], bool] | None = None,
        heartbeat: Heartbeat = no_heartbeat,
    ):
        self._cfg = parse_settings(settings)
        self._secret = secret
        self._environ = os.environ if environ is None else environ
        # Checked under the request's lock: a late grant retry can never
        # resurrect a role that a rollback already dropped.
        self._is_revoked = is_revoked
        self._heartbeat = heartbeat

    def _connect(self) -> psycopg.Connection[Any]:
        dsn = admin_dsn(self._cfg, self._environ)
        conn = psycopg.connect(dsn, autocommit=True, connect_timeout=10, application_name="jit-access")
        self._heartbeat("connected")
        return conn

    @contextmanager
    def _locked(self, conn: psycopg.Connection[Any], request_id: str) -> Iterator[None]:
        """A transaction holding the request's advisory lock: retries of one request serialise."""
        with conn.transaction():
            # Bounded waits, so an attempt cannot outlive its activity timeout by much.
            conn.execute("SELECT set_config('lock_timeout', '10s', true), set_config('statement_timeout', '30s', true)")
            key = int.from_bytes(hashlib.sha256(b"jit-access:" + request_id.encode()).digest()[:8], "big", signed=True)
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (key,))
            yield

    def _roles(self, conn: psycopg.Connection[Any], request_id: str) -> list[tuple[str, bool]]:
        rows = conn.execute(
            "SELECT rolname, rolcanlogin FROM pg_roles WHERE starts_with(rolname, %s) ORDER BY rolname",
            (role_prefix(request_id),),
        ).fetchall()
        return [(r[0], r[1]) for r in rows]

    def request_ids(self) -> set[str]:
        """The requests that still have a role here (read from each role's comment), for the reconciler."""
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE starts_with(rolname, %s)",
                (ROLE_PREFIX,),
            ).fetchall()
        found = set()
        for (note,) in rows:
            match = _NOTE.match(note or "")
            if match:
                found.add(match.group(1))
        return found

    def grant(self, spec: GrantSpec) -> GrantOutcome:
        privileges = self._cfg.privileges_for(spec.action)
        name = role_name(spec.request_id, spec.requester)
        try:
            with self._connect() as conn, self._locked(conn, spec.request_id):
                if self._is_revoked is not None and self._is_revoked(spec.request_id):
                    raise RevokedBeforeGrantError(f"request {spec.request_id} was revoked before it was provisioned")
                existing = [r for r, _ in self._roles(conn, spec.request_id)]
                if existing and existing != [name]:
                    raise ProvisionerError(f"roles {existing} already exist for request {spec.request_id}")
                role = sql.Identifier(name)
                if not existing:
                    # A repeat keeps the first role as it is: re-asserting VALID
                    # UNTIL could undo an extension made since.
                    conn.execute(
                        sql.SQL(
                            "CREATE ROLE {} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT "
                            "NOREPLICATION NOBYPASSRLS CONNECTION LIMIT {} VALID UNTIL {} PASSWORD {}"
                        ).format(
                            role,
                            sql.Literal(self._cfg.connection_limit),
                            sql.Literal(spec.expires_at.isoformat()),
                            sql.Literal(scram_verifier(derive_password(self._secret, spec.request_id))),
                        )
                    )
                    note = (
                        f"jit-access request {spec.request_id}: {spec.action} on {spec.resource} for {spec.requester}"
                    )
                    conn.execute(sql.SQL("COMMENT ON ROLE {} IS {}").format(role, sql.Literal(note)))
                self._heartbeat("role ready")
                self._grant_privileges(conn, role, privileges)
        except psycopg.ProgrammingError as e:
            # Missing table, schema or privilege of the admin: a catalog or setup fault.
            raise ProvisionerError(f"postgres grant failed: {e.diag.message_primary or e}") from e
        return GrantOutcome(
            request_id=spec.request_id,
            provisioner=self.name,
            principal=name,
            created=not existing,
            expires_at=spec.expires_at,
        )

    def _grant_privileges(self, conn: psycopg.Connection[Any], role: sql.Identifier, privileges: list[str]) -> None:
        db = conn.execute("SELECT current_database()").fetchone()
        assert db is not None
        conn.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(sql.Identifier(db[0]), role))
        for schema in sorted({t.schema_name for t in self._cfg.tables}):
            conn.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(sql.Identifier(schema), role))
        for t in self._cfg.tables:
            if t.columns:
                cols = sql.SQL(", ").join(map(sql.Identifier, t.columns))
                what = sql.SQL(", ").join(sql.SQL("{} ({})").format(sql.SQL(p), cols) for p in privileges)
            else:
                what = sql.SQL(", ").join(map(sql.SQL, privileges))
            table = sql.Identifier(t.schema_name, t.table)
            conn.execute(sql.SQL("GRANT {} ON TABLE {} TO {}").format(what, table, role))

    def extend(self, request_id: str, expires_at: datetime) -> None:
        with self._connect() as conn, self._locked(conn, request_id):
            roles = [r for r, can_login in self._roles(conn, request_id) if can_login]
            if not roles:
                raise GrantGoneError(f"no live role for request {request_id}")
            for r in roles:
                conn.execute(
                    sql.SQL("ALTER ROLE {} VALID UNTIL {}").format(
                        sql.Identifier(r), sql.Literal(expires_at.isoformat())
                    )
                )

    def revoke(self, request_id: str) -> RevokeOutcome:
        sessions = _SESSIONS.format(prefix=sql.Literal(role_prefix(request_id)))
        with self._connect() as conn:
            with self._locked(conn, request_id):
                roles = [r for r, _ in self._roles(conn, request_id)]
                for r in roles:
                    conn.execute(sql.SQL("ALTER ROLE {} NOLOGIN").format(sql.Identifier(r)))
            # NOLOGIN is committed, so no session can start anew; end the open
            # ones, each call waiting until its backend has really exited.
            self._heartbeat("terminating sessions")
            wait = sql.Literal(_TERMINATE_WAIT_MS)
            found = conn.execute(
                sql.SQL("SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, {})) ").format(wait) + sessions
            ).fetchone()
            terminated = found[0] if found else 0
            with self._locked(conn, request_id):
                left = conn.execute(sql.SQL("SELECT count(*) ") + sessions).fetchone()
                if left and left[0]:
                    # Dropping now would orphan them; the retry terminates them again.
                    raise RuntimeError(f"{left[0]} session(s) of request {request_id} still open")
                for r, _ in self._roles(conn, request_id):
                    self._drop_role(conn, sql.Identifier(r))
        return RevokeOutcome(
            request_id=request_id,
            provisioner=self.name,
            removed=roles,
            sessions_terminated=terminated,
            already_gone=not roles,
        )

    def _drop_role(self, conn: psycopg.Connection[Any], role: sql.Identifier) -> None:
        # Take back what grant gave (the admin granted it, so the admin can),
        # then drop. Only if something else still holds the role (an object it
        # owns, a privilege granted out of band) fall back to DROP OWNED,
        # which needs the privileges of the role itself.
        db = conn.execute("SELECT current_database()").fetchone()
        assert db is not None
        statements = [sql.SQL("REVOKE ALL ON DATABASE {} FROM {}").format(sql.Identifier(db[0]), role)]
        for schema in sorted({t.schema_name for t in self._cfg.tables}):
            statements.append(sql.SQL("REVOKE ALL ON SCHEMA {} FROM {}").format(sql.Identifier(schema), role))
        for t in self._cfg.tables:
            statements.append(
                sql.SQL("REVOKE ALL ON TABLE {} FROM {}").format(sql.Identifier(t.schema_name, t.table), role)
            )
        for statement in statements:
            try:
                with conn.transaction():
                    conn.execute(statement)
            except (psycopg.errors.UndefinedTable, psycopg.errors.InvalidSchemaName):
                pass  # the object is gone, and its privileges with it
        try:
            with conn.transaction():
                conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(role))
        except psycopg.errors.DependentObjectsStillExist:
            conn.execute(sql.SQL("REASSIGN OWNED BY {} TO CURRENT_USER").format(role))
            conn.execute(sql.SQL("DROP OWNED BY {}").format(role))
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(role))

    def verify_revoked(self, request_id: str) -> bool:
        """True only when no role of the request exists and no session of it is open."""
        with self._connect() as conn:
            prefix = sql.Literal(role_prefix(request_id))
            row = conn.execute(
                sql.SQL(
                    "SELECT NOT EXISTS (SELECT 1 FROM pg_roles WHERE starts_with(rolname, {})) "
                    "AND NOT EXISTS (SELECT 1 "
                ).format(prefix)
                + _SESSIONS.format(prefix=prefix)
                + sql.SQL(")")
            ).fetchone()
        return bool(row and row[0])
