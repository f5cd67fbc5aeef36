"""``jit token ID --psql``: a grant's database credentials as a ready ``psql`` command.

For the person who asked: it goes to their terminal and nowhere else (the
password is in it, as ``PGPASSWORD``, so nothing is left to paste). The
``psql`` is the pgserver wheel's when it is installed (``make demo-db`` uses
the same), else the one on the PATH.
"""

from __future__ import annotations

import importlib.util
import shlex
from pathlib import Path
from typing import Any

from psycopg.conninfo import make_conninfo

from cli.client import CliError


def psql_binary() -> str:
    # Found without importing the wheel (its import sets up runtime dirs and locks).
    spec = importlib.util.find_spec("pgserver")
    if spec is not None and spec.submodule_search_locations:
        found = Path(spec.submodule_search_locations[0]) / "pginstall" / "bin" / "psql"
        if found.is_file():
            return str(found)
    return "psql"


def psql_command(credentials: dict[str, Any]) -> str:
    db = credentials.get("database")
    if not db:
        raise CliError("this grant has no database credentials: its resource has no postgres provisioner")
    conninfo = make_conninfo(host=db["host"], port=str(db["port"]), dbname=db["dbname"] or "", user=db["username"])
    return f"PGPASSWORD={shlex.quote(db['password'])} {shlex.quote(psql_binary())} {shlex.quote(conninfo)}"
