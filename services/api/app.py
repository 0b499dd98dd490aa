"""`create_app`: the API's parts on `app.state`, one router per resource, the error handlers, and
the edge every request passes (`services.api.edge`: token before body, body size, failed-token
limit, client address, audit with the real status, security headers, request metrics)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from prometheus_client import CollectorRegistry, Counter
from starlette.exceptions import HTTPException as StarletteHTTPException

import dashboards
from core import __version__
from core.settings import Settings
from services.api.edge import Edge
from services.api.errors import http_error, invalid_request, server_error
from services.api.routers import ROUTERS
from services.auth import TokenVerifier
from services.ingest import Ingestor
from services.report_jobs import ReportJobs
from storage import Store

DASHBOARD = Path(dashboards.__file__).parent / "web"


def operation_id(route: APIRoute) -> str:
    """Operation ids are the route functions' names: `list_accounts`, `get_account`, ..."""
    return route.name


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """On a clean stop, report jobs in progress finish before the process exits."""
    yield
    app.state.report_jobs.shutdown()


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
        lifespan=_lifespan,
    )
    app.state.settings = settings
    app.state.store = store
    app.state.ingestor = ingestor
    app.state.verify = TokenVerifier(store)
    app.state.metrics = CollectorRegistry()
    app.state.started = time.time()
    app.state.report_jobs = ReportJobs(store, settings)
    requests_total = Counter(
        "distillguard_api_requests", "API requests", ["route", "status"], registry=app.state.metrics
    )

    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(Exception, server_error)  # a failure of the edge itself
    app.add_middleware(
        Edge,
        store=store,
        verify=app.state.verify,
        max_request_bytes=settings.max_request_bytes,
        trusted_proxies=settings.trusted_proxies,
        auth_failures_per_minute=settings.auth_failures_per_minute,
        requests_total=requests_total,
    )

    for router in ROUTERS:
        app.include_router(router)
    # The dashboard's static files hold no data (every data call needs the token).
    app.mount("/dashboard", StaticFiles(directory=DASHBOARD, html=True), name="dashboard")
    app.router.add_route(
        "/", lambda _request: RedirectResponse("/dashboard/"), include_in_schema=False
    )
    return app
