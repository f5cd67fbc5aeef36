"""Durations as people type them: ISO 8601 (``PT15M``), seconds, or ``1h30m``."""

from __future__ import annotations

import re

_ISO = re.compile(
    r"^P(?:(?P<d>\d+)D)?(?:T(?:(?P<h>\d+)H)?(?:(?P<m>\d+)M)?(?:(?P<s>\d+)S)?)?$", re.IGNORECASE | re.ASCII
)
_SHORT = re.compile(r"^(?:(?P<d>\d+)d)?(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m)?(?:(?P<s>\d+)s)?$", re.ASCII)
_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
# Far beyond any sane grant, small enough that arithmetic on it never overflows.
_CEILING_S = 10 * 366 * 86400


class DurationError(ValueError):
    pass


def parse_duration(value: object) -> int:
    """Return whole seconds, > 0. Raise DurationError with a reason otherwise."""
    if isinstance(value, bool):
        raise DurationError("must be an ISO 8601 duration like PT15M or a number of seconds")
    if isinstance(value, int):
        seconds = value
    elif isinstance(value, float):
        if not value.is_integer():
            raise DurationError("must be a whole number of seconds")
        seconds = int(value)
    elif isinstance(value, str):
        seconds = _parse_text(value.strip())
    else:
        raise DurationError("must be an ISO 8601 duration like PT15M or a number of seconds")
    if seconds <= 0:
        raise DurationError("must be greater than zero")
    if seconds > _CEILING_S:
        raise DurationError("is too long")
    return seconds


def _parse_text(text: str) -> int:
    if len(text) > 32:  # also keeps int() below its 4300-digit limit
        raise DurationError("is too long to be a duration")
    if text.isascii() and text.isdigit():  # not "²": str.isdigit() takes it, int() does not
        return int(text)
    match = _ISO.match(text) or _SHORT.match(text.lower())
    if not match or not any(match.groupdict().values()):
        raise DurationError(f"{text!r} is not a duration like PT15M, 900 or 15m")
    return sum(int(v) * _UNITS[k] for k, v in match.groupdict().items() if v)


def format_duration(seconds: int) -> str:
    """``5400`` -> ``1h30m``: for summaries and the CLI."""
    parts = []
    for unit, size in _UNITS.items():
        amount, seconds = divmod(seconds, size)
        if amount:
            parts.append(f"{amount}{unit}")
    return "".join(parts) or "0s"
