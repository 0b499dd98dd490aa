"""`create_app`: the API's parts on `app.state`, one router per resource, the error handlers, and
the edge every response passes (request size limit, security headers, request metrics)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse, Response
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from prometheus_client import CollectorRegistry, Counter
from starlette.exceptions import HTTPException as StarletteHTTPException

import dashboards
from core import __version__
from core.settings import Settings
from services.api.errors import error_response, http_error, invalid_request
from services.api.routers import ROUTERS
from services.auth import TokenVerifier
from services.ingest import Ingestor
from storage import Store

DASHBOARD = Path(dashboards.__file__).parent / "web"
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


def operation_id(route: APIRoute) -> str:
    """Operation ids are the route functions' names: `list_accounts`, `get_account`, ..."""
    return route.name


def create_app(settings: Settings, store: Store, ingestor: Ingestor | None = None) -> FastAPI:
    """The API over `store`; `POST /v1/events` hands batches to `ingestor` (without one, the API
    takes no events: `distillguard.wiring.build_api` passes the deployment's)."""
    app = FastAPI(
        title="DistillGuard",
        version=__version__,
        description="Model-extraction detection: accounts, verdicts, campaigns and evidence.",
        openapi_url=None,  # served by the admin router, behind a token like every route but health
        docs_url=None,
        redoc_url=None,
        generate_unique_id_function=operation_id,
    )
    app.state.settings = settings
    app.state.store = store
    app.state.ingestor = ingestor
    app.state.verify = TokenVerifier(store)
    app.state.metrics = CollectorRegistry()
    app.state.started = time.time()
    requests_total = Counter(
        "distillguard_api_requests", "API requests", ["route", "status"], registry=app.state.metrics
    )

    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, invalid_request)

    @app.middleware("http")
    async def edge(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > settings.max_request_bytes:
            response: Response = error_response(
                413, f"request body over {settings.max_request_bytes} bytes"
            )
        else:
            response = await call_next(request)
        response.headers.update(SECURITY_HEADERS)
        route = request.scope.get("route")
        requests_total.labels(getattr(route, "path", "unmatched"), str(response.status_code)).inc()
        return response

    for router in ROUTERS:
        app.include_router(router)
    # The dashboard's static files hold no data (every data call needs the token).
    app.mount("/dashboard", StaticFiles(directory=DASHBOARD, html=True), name="dashboard")
    app.router.add_route(
        "/", lambda _request: RedirectResponse("/dashboard/"), include_in_schema=False
    )
    return app
