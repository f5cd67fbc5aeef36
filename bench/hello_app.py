"""The ceiling for introspection: a hello-world endpoint on the same FastAPI/uvicorn setup as the API.

    .venv/bin/python -m uvicorn --app-dir bench hello_app:app --host 127.0.0.1 --port 8100

Same framework, same server and event loop (uvloop, httptools: ``uvicorn[standard]``),
one process; no identity check, no signature check, no grant lookup, no middleware.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import JSONResponse

app = FastAPI()


@app.get("/hello")
async def hello() -> JSONResponse:
    return JSONResponse({"hello": "world"})


@app.post("/hello")
async def hello_post() -> JSONResponse:
    return JSONResponse({"hello": "world"})
