"""The web page for requesters and approvers, under ``/ui`` (README "Web page").

Server-rendered from the API process: Jinja2 templates, one static script and
one stylesheet, no build step. Not part of the REST API's OpenAPI document.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from api.ui import auth, routes
from api.ui.session import UiSessionMiddleware
from core.settings import Settings

STATIC = Path(__file__).parent / "static"


def install(app: FastAPI, settings: Settings) -> None:
    app.add_middleware(UiSessionMiddleware, settings=settings)
    app.mount("/ui/static", StaticFiles(directory=STATIC), name="ui-static")
    app.include_router(auth.build_router(settings), include_in_schema=False)
    app.include_router(routes.build_router(settings), include_in_schema=False)
