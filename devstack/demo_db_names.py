"""What the demo database is called and where it listens: shared by its server and its banner."""

from __future__ import annotations

HOST = "127.0.0.1"
DBNAME = "orders"
ADMIN = "access_admin"
# What the walk-through's provisioner block names when the catalog has none.
EXAMPLE_RESOURCE = "postgres:orders-staging/public.orders"
EXAMPLE_DSN_ENV = "JIT_PG_ORDERS_STAGING_DSN"


def admin_dsn(port: int, password: str) -> str:
    return f"postgresql://{ADMIN}:{password}@{HOST}:{port}/{DBNAME}"
