"""Provisioner types as the catalog, the API and the worker know them: each type's settings.

How a type makes access real (a database role, an HTTP call) is in
``activities/provisioners/``; what needs no connection is here, so the catalog
and the API check a ``provisioner:`` block without importing the activities.
A new type is its settings module here, one line in ``SETTINGS``, and its
factory in ``activities/provisioning.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from core.provisioners import postgres_config, webhook_config
from core.provisioners.errors import ProvisionerConfigError

NONE, POSTGRES, WEBHOOK = "none", "postgres", "webhook"


def _no_settings(_settings: Mapping[str, Any]) -> None:
    return None  # the signed token is the access; the block needs only its type


# Type → its settings' parser, which raises ProvisionerConfigError naming the field.
SETTINGS: dict[str, Callable[[Mapping[str, Any]], object]] = {
    NONE: _no_settings,
    POSTGRES: postgres_config.parse_settings,
    WEBHOOK: webhook_config.parse_settings,
}


def type_of(settings: Mapping[str, Any]) -> str:
    """A catalog ``provisioner:`` block's type; no block, or no type, is ``none``."""
    return str(settings.get("type", NONE)) if settings else NONE


def check(settings: Mapping[str, Any]) -> None:
    kind = type_of(settings)
    parse = SETTINGS.get(kind)
    if parse is None:
        raise ProvisionerConfigError(f"provisioner type must be one of {', '.join(sorted(SETTINGS))}, not {kind!r}")
    parse(settings)
