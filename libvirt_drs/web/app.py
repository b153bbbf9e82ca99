"""The ASGI application: the API and console routers over one operations Cluster, with
the typed errors of the operations mapped to HTTP status codes (one-sentence JSON)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from libvirt_drs import __version__
from libvirt_drs.errors import UserError
from libvirt_drs.operations.context import Cluster
from libvirt_drs.operations.errors import Conflict, Forbidden, Invalid, NotFound
from libvirt_drs.secrets import redact
from libvirt_drs.web import api, console
from libvirt_drs.web.auth import Sessions

log = logging.getLogger(__name__)
STATIC = Path(__file__).resolve().parent / "static"
SECURITY_HEADERS = {
    # everything the console loads is its own: no CDN, no inline script
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; "
                               "script-src 'self'; frame-ancestors 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}


def _error(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": redact(" ".join(message.split())), **extra}, status_code=status)


def create_app(cluster: Cluster, session_ttl_s: float = 43200.0, workers: int = 4) -> FastAPI:
    app = FastAPI(title="libvirt-drs", version=__version__,
                  description="DRS for libvirt/KVM clusters: status, recommendations, live "
                              "migration, maintenance, placement. Authenticate with "
                              "`Authorization: Bearer <token>` (`drs tokens create`).",
                  openapi_url="/api/v1/openapi.json", docs_url=None, redoc_url=None,
                  lifespan=_lifespan)
    app.state.cluster = cluster
    app.state.sessions = Sessions(session_ttl_s)
    app.state.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="drs-web-job")
    app.include_router(api.router)
    app.include_router(console.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.middleware("http")
    async def headers(request: Request, call_next):  # type: ignore[no-untyped-def]
        response: Response = await call_next(request)
        for k, v in SECURITY_HEADERS.items():
            response.headers.setdefault(k, v)
        if request.url.path.startswith("/api/"):
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    @app.exception_handler(NotFound)
    def not_found(_r: Request, exc: NotFound) -> JSONResponse:
        return _error(404, str(exc))

    @app.exception_handler(Forbidden)
    def forbidden(_r: Request, exc: Forbidden) -> JSONResponse:
        return _error(403, str(exc))

    @app.exception_handler(Conflict)
    def conflict(_r: Request, exc: Conflict) -> JSONResponse:
        return _error(409, str(exc), reason=exc.reason)

    @app.exception_handler(Invalid)
    def invalid(_r: Request, exc: Invalid) -> JSONResponse:
        return _error(422, str(exc), field=exc.field)

    @app.exception_handler(UserError)
    def user_error(_r: Request, exc: UserError) -> JSONResponse:
        return _error(409, str(exc), reason="refused")

    @app.exception_handler(RequestValidationError)
    def bad_body(_r: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        where = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path")]
        field = ".".join(where) or "body"
        return _error(422, f"{field}: {first.get('msg', 'invalid')}", field=field)

    @app.exception_handler(HTTPException)
    def http_error(request: Request, exc: HTTPException) -> Response:
        if exc.status_code == 401 and console.wants_html(request):
            return RedirectResponse("/login", status_code=303)
        return _error(exc.status_code, str(exc.detail))

    return app


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    yield
    # queued background runs are dropped; running migrations are the service's to stop
    # (its shutdown control aborts them after the grace period)
    app.state.pool.shutdown(wait=False, cancel_futures=True)
