"""What a provisioner raises when retrying will not help, and how a settings block is read so its errors name the field.

Apart from the provisioners themselves: the catalog loader and the API raise and
catch ``ProvisionerConfigError`` too. The class names are the failure types
recorded in Temporal history, so they stay as they are.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


class ProvisionerError(Exception):
    """Retrying will not help: bad catalog settings, a missing table, a refused privilege."""


class ProvisionerConfigError(ProvisionerError):
    """The ``provisioner:`` block or the worker's environment is wrong."""


class GrantGoneError(ProvisionerError):
    """Extend found no live grant to extend (revoked, or never made)."""


class RevokedBeforeGrantError(ProvisionerError):
    """The request was revoked (rolled back) before this grant attempt ran."""


def parse_block(kind: str, model: type[M], settings: Mapping[str, Any]) -> M:
    """A ``provisioner:`` block as ``model``; its first error names the field:
    ``postgres provisioner: tables: Field required``."""
    try:
        return model.model_validate(dict(settings))
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        message = first["msg"].removeprefix("Value error, ")  # pydantic's prefix says nothing to a reader
        raise ProvisionerConfigError(f"{kind} provisioner: {where + ': ' if where else ''}{message}") from e
