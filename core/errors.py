"""Failures the workflow reports to the API, by name.

Update validators raise these; the API maps each type to one HTTP status in
``api/errors.py``. Kept here so both sides spell the types the same way.
"""

from temporalio.exceptions import ApplicationError

FORBIDDEN = "Forbidden"
CONFLICT = "Conflict"
INVALID = "InvalidArgument"


def forbidden(message: str) -> ApplicationError:
    return ApplicationError(message, type=FORBIDDEN, non_retryable=True)


def conflict(message: str) -> ApplicationError:
    return ApplicationError(message, type=CONFLICT, non_retryable=True)


def invalid(field: str, message: str) -> ApplicationError:
    return ApplicationError(message, {"field": field}, type=INVALID, non_retryable=True)
