"""What a provisioner raises when retrying will not help (the activities make these non-retryable).

Apart from the provisioners themselves: the catalog loader and the API raise and
catch ``ProvisionerConfigError`` too. The class names are the failure types
recorded in Temporal history, so they stay as they are.
"""

from __future__ import annotations

from pydantic import ValidationError


class ProvisionerError(Exception):
    """Retrying will not help: bad catalog settings, a missing table, a refused privilege."""


class ProvisionerConfigError(ProvisionerError):
    """The ``provisioner:`` block or the worker's environment is wrong."""


class GrantGoneError(ProvisionerError):
    """Extend found no live grant to extend (revoked, or never made)."""


class RevokedBeforeGrantError(ProvisionerError):
    """The request was revoked (rolled back) before this grant attempt ran."""


def config_error(kind: str, e: ValidationError) -> ProvisionerConfigError:
    """A settings block's first error, naming the field: ``postgres provisioner: tables: ...``."""
    first = e.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    message = first["msg"].removeprefix("Value error, ")  # pydantic's prefix says nothing to a reader
    return ProvisionerConfigError(f"{kind} provisioner: {where + ': ' if where else ''}{message}")
