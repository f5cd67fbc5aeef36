"""The access-request lifecycle: start reading at ``access_request.py``."""

from workflows.access_request import AccessRequestWorkflow

__all__ = ["AccessRequestWorkflow"]
