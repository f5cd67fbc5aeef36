"""Shared by the API, the worker and the CLI: models, settings, catalog, keys."""
