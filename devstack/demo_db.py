"""``python -m devstack.demo_db`` (what ``make demo-db`` runs): a PostgreSQL to try provisioning on.

In the foreground, beside ``make run`` in a second terminal; Ctrl-C stops it.
PostgreSQL comes from the ``pgserver`` wheel (a dev dependency), listens on
loopback TCP only and asks everyone for a password (SCRAM), except its
superuser on the Unix socket in the owner-only data dir. On every start it
makes sure of what the README's PostgreSQL walk-through sets up by hand: the
``orders`` database with a few rows in ``public.orders`` and
``public.customers``, ``PUBLIC``'s default rights on the database and schema
revoked (so only what a grant gives lets a role in), and the ``access_admin``
role the worker provisions with. Then it prints the DSN variable to export for
``make run`` (the ``dsn_env`` of the catalog's postgres provisioners) and how
to connect with the wheel's ``psql`` (devstack/demo_db_banner.py).

    python -m devstack.demo_db [--port 5433] [--data-dir .demo-db]

The flags default to ``JIT_DEMO_DB_PORT`` and ``JIT_DEMO_DB_DIR``. The data dir
(PostgreSQL's own, 0700) and the admin's password (random, made once, kept in
it) stay between runs. As root, PostgreSQL runs as the ``pgserver`` system user,
as the wheel does; it is not under ``.data`` because that user must be able to
reach it, and ``.data`` is root's alone.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import secrets
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from core.provisioners.postgres_config import scram_verifier
from core.settings import Settings
from devstack.demo_db_banner import banner, catalog_targets
from devstack.demo_db_names import ADMIN, DBNAME, HOST
from devstack.processes import POLL_S, Console, Fatal, Interrupted, Supervisor

ROOT = Path(__file__).resolve().parent.parent
PORT = 5433  # not 5432: a system PostgreSQL may hold that
DATA_DIR = ROOT / ".demo-db"
SUPERUSER = "postgres"
SYSTEM_USER = "pgserver"  # the wheel's own choice when run as root
PASSWORD_FILE = "jit-demo-admin-password"  # noqa: S105 (a file name)
START_TIMEOUT_S = 60.0

# Only the superuser on the socket (in the 0700 data dir: its owner and root
# alone reach it) gets in without a password; everyone else over loopback TCP
# with SCRAM. No other line: anything else is refused.
PG_HBA = f"""\
# Written by python -m devstack.demo_db on every start.
local all {SUPERUSER} trust
host  all all 127.0.0.1/32 scram-sha-256
"""

CUSTOMERS = [
    (1, "Jane Doe", "jane.doe@example.com"),
    (2, "Max Mustermann", "max@example.com"),
    (3, "Erika Example", "erika@example.com"),
]
ORDERS = [
    (1001, 1, "paid", "42.50"),
    (1002, 1, "refund-pending", "19.99"),
    (1003, 2, "shipped", "120.00"),
    (1004, 3, "paid", "7.25"),
]


def _env_port(name: str, default: int) -> int:
    value = os.environ.get(name) or str(default)
    try:
        return int(value)
    except ValueError:
        raise SystemExit(f"demo-db: {name}={value!r} is not a port number") from None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m devstack.demo_db",
        description="A PostgreSQL with the orders database and the access_admin role, in the foreground.",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=_env_port("JIT_DEMO_DB_PORT", PORT),
        help=f"loopback TCP port [env: JIT_DEMO_DB_PORT, default {PORT}]",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get("JIT_DEMO_DB_DIR") or DATA_DIR),
        help="PostgreSQL's data dir, kept between runs [env: JIT_DEMO_DB_DIR, default .demo-db]",
    )
    parser.add_argument("--catalog", type=Path, default=None, help="the catalog to match [default: JIT_CATALOG_PATH]")
    parser.add_argument(
        "--start-timeout", type=float, default=START_TIMEOUT_S, help="seconds to wait for PostgreSQL to be ready"
    )
    args = parser.parse_args(argv)
    if not 0 < args.port < 65536:
        parser.error(f"--port {args.port} is not a port number")
    args.data_dir = args.data_dir.expanduser().resolve()
    return args


def bin_dir() -> Path:
    """The wheel's binaries, found without importing it (its import sets up runtime dirs and locks)."""
    found = importlib.util.find_spec("pgserver")
    if found is None or not found.submodule_search_locations:
        raise Fatal("the pgserver wheel is not installed: pip install -e '.[dev]', or make demo-db")
    return Path(found.submodule_search_locations[0]) / "pginstall" / "bin"


def psql_path() -> Path:
    return bin_dir() / "psql"


# -- the server -------------------------------------------------------------------


@dataclass
class DemoDb:
    args: argparse.Namespace
    console: Console
    procs: Supervisor = field(init=False)
    socket_dir: Path | None = None
    _temp_socket_dir: bool = False

    def __post_init__(self) -> None:
        self.procs = Supervisor(self.console)

    @property
    def data_dir(self) -> Path:
        return self.args.data_dir

    @property
    def system_user(self) -> str | None:
        return SYSTEM_USER if os.geteuid() == 0 else None

    def say(self, text: str) -> None:
        self.console.line("demo-db", text)

    def check_port(self) -> None:
        from devstack.__main__ import port_in_use

        if port_in_use(self.args.port):
            raise Fatal(
                f"port {self.args.port} is already in use on {HOST}: stop whatever holds it "
                "(another make demo-db?) or pick another with --port / JIT_DEMO_DB_PORT"
            )

    def prepare_dir(self) -> None:
        """Owner-only data dir; as root, owned by the system user PostgreSQL runs as."""
        if not self.data_dir.parent.is_dir():
            raise Fatal(f"{self.data_dir.parent} is not a directory")
        self.data_dir.mkdir(mode=0o700, exist_ok=True)
        self.data_dir.chmod(0o700)
        user = self.system_user
        if user is not None:
            import pwd

            with warnings.catch_warnings():  # its import warns about XDG_RUNTIME_DIR, which we do not use
                warnings.simplefilter("ignore")
                from pgserver.utils import ensure_folder_permissions, ensure_prefix_permissions, ensure_user_exists

            ensure_user_exists(user)
            entry = pwd.getpwnam(user)
            # As the wheel does: the system user must reach the data dir and the binaries.
            ensure_prefix_permissions(self.data_dir)
            ensure_prefix_permissions(bin_dir())
            ensure_folder_permissions(bin_dir(), 0o055)
            ensure_folder_permissions(bin_dir().parent / "lib", 0o044)
            os.chown(self.data_dir, entry.pw_uid, entry.pw_gid)

    def initdb(self) -> None:
        if (self.data_dir / "PG_VERSION").exists():
            self.say(f"data in {self.data_dir} (kept between runs)")
            return
        self.say(f"creating a cluster in {self.data_dir}")
        cmd = [str(bin_dir() / "initdb"), "-D", str(self.data_dir), "-U", SUPERUSER, "--auth=trust"]
        cmd += ["--encoding=UTF8", "--no-instructions"]  # pg_hba.conf is ours, written next
        result = subprocess.run(  # noqa: S603 - the wheel's initdb, an argument list
            cmd, capture_output=True, text=True, cwd=self.data_dir, user=self.system_user, umask=0o077, check=False
        )
        if result.returncode != 0:
            raise Fatal(f"initdb failed: {result.stderr.strip() or result.stdout.strip()}")

    def write_config(self) -> None:
        hba = self.data_dir / "pg_hba.conf"
        hba.write_text(PG_HBA)
        if self.system_user is not None:
            import pwd

            entry = pwd.getpwnam(self.system_user)
            os.chown(hba, entry.pw_uid, entry.pw_gid)

    def admin_password(self) -> str:
        """Random, made once and kept (0600) beside the cluster, so the exported DSN stays right."""
        path = self.data_dir / PASSWORD_FILE
        if not path.exists():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(18))
        return path.read_text().strip()

    def choose_socket_dir(self) -> Path:
        # A Unix socket path is at most ~107 bytes; a deep data dir gets a short private one.
        if len(str(self.data_dir / f".s.PGSQL.{self.args.port}")) < 100:
            return self.data_dir
        short = Path(tempfile.mkdtemp(prefix="jit-demo-db-"))
        self._temp_socket_dir = True
        if self.system_user is not None:
            import pwd

            entry = pwd.getpwnam(self.system_user)
            os.chown(short, entry.pw_uid, entry.pw_gid)
        return short

    def start(self) -> None:
        self.socket_dir = self.choose_socket_dir()
        self.procs.spawn(
            "postgres",
            [
                str(bin_dir() / "postgres"),
                "-D", str(self.data_dir),
                "-p", str(self.args.port),
                "-c", f"listen_addresses={HOST}",
                "-c", f"unix_socket_directories={self.socket_dir}",
                "-c", "unix_socket_permissions=0700",
                "-c", "password_encryption=scram-sha-256",
                "-c", "log_checkpoints=off",
                "-c", "logging_collector=off",
            ],
            cwd=self.data_dir,
            env={**os.environ, "LC_ALL": "C"},
            user=self.system_user,
        )  # fmt: skip

    @contextmanager
    def superuser(self, dbname: str = "postgres") -> Iterator[psycopg.Connection[Any]]:
        assert self.socket_dir is not None
        with psycopg.connect(
            host=str(self.socket_dir), port=self.args.port, user=SUPERUSER, dbname=dbname, autocommit=True
        ) as conn:
            yield conn

    def wait_ready(self) -> None:
        deadline = time.monotonic() + self.args.start_timeout
        problem = "no answer"
        while time.monotonic() < deadline:
            try:
                with self.superuser() as conn:
                    conn.execute("SELECT 1")
                return
            except psycopg.OperationalError as e:
                problem = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
            self.procs.wait_event(POLL_S)
        raise Fatal(f"PostgreSQL on port {self.args.port} not ready after {self.args.start_timeout:.0f}s: {problem}")

    def set_up(self, password: str) -> None:
        """The README's walk-through SQL, made idempotent: safe on every start."""
        with self.superuser() as conn:
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DBNAME,)).fetchone():
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DBNAME)))
            admin = sql.Identifier(ADMIN)
            if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (ADMIN,)).fetchone():
                conn.execute(sql.SQL("CREATE ROLE {} LOGIN CREATEROLE").format(admin))
            # A verifier, not the password: not even a statement log would see it.
            conn.execute(
                sql.SQL("ALTER ROLE {} LOGIN CREATEROLE PASSWORD {}").format(
                    admin, sql.Literal(scram_verifier(password))
                )
            )
            conn.execute(sql.SQL("GRANT pg_signal_backend TO {}").format(admin))
        with self.superuser(DBNAME) as conn, conn.transaction():
            conn.execute(
                "CREATE TABLE IF NOT EXISTS public.customers ("
                "id integer PRIMARY KEY, name text NOT NULL, email text NOT NULL)"
            )
            conn.execute(
                "CREATE TABLE IF NOT EXISTS public.orders ("
                "id integer PRIMARY KEY, customer_id integer NOT NULL REFERENCES public.customers, "
                "status text NOT NULL, total numeric(10, 2) NOT NULL, created_at timestamptz NOT NULL DEFAULT now())"
            )
            with conn.cursor() as cur:
                cur.executemany("INSERT INTO public.customers VALUES (%s, %s, %s) ON CONFLICT DO NOTHING", CUSTOMERS)
                cur.executemany(
                    "INSERT INTO public.orders (id, customer_id, status, total) VALUES (%s, %s, %s, %s) "
                    "ON CONFLICT DO NOTHING",
                    ORDERS,
                )
            db = sql.Identifier(DBNAME)
            # PUBLIC may connect to a new database and use schema public: without
            # this, a role would get in whatever its grant said.
            conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(db))
            conn.execute("REVOKE ALL ON SCHEMA public FROM PUBLIC")
            conn.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {} WITH GRANT OPTION").format(db, admin))
            conn.execute(sql.SQL("GRANT USAGE ON SCHEMA public TO {} WITH GRANT OPTION").format(admin))
            conn.execute(
                sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON public.orders TO {} WITH GRANT OPTION").format(admin)
            )

    def run(self) -> None:
        self.check_port()
        self.prepare_dir()
        self.initdb()
        self.write_config()
        password = self.admin_password()
        self.start()
        self.wait_ready()
        self.set_up(password)
        catalog = self.args.catalog or Settings().catalog_path
        targets = catalog_targets(catalog, self.args.port)
        self.console.block(banner(self.args.port, password, self.data_dir, targets, psql_path()))
        while True:
            self.procs.wait_event(3600)

    def stop(self) -> None:
        self.procs.stop_all()
        if self._temp_socket_dir and self.socket_dir is not None:
            import shutil

            shutil.rmtree(self.socket_dir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    db = DemoDb(args, Console(sys.stdout))
    db.procs.install_signal_handlers()
    reason: str | None = None
    try:
        db.run()
    except Interrupted as e:
        db.say(f"got {e}: stopping")
    except Fatal as e:
        reason = str(e)
    finally:
        db.stop()
    if reason is not None:
        print(f"demo-db: {reason}", file=sys.stderr, flush=True)
        return 1
    db.say("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
