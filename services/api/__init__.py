"""The analysts' REST API (`distillguard serve`): accounts ranked by risk, verdicts, campaigns,
events, reports, alerts and webhooks, the audit log and tokens. Every route but `/healthz` (and
the dashboard's static files) needs a bearer token, checked by the edge before the body is read;
analysts read, admins also manage tokens and webhooks and read the audit log, ingest tokens only
post events. Every read of an account's or a campaign's data, and every refusal (401, 403, 429),
is written to the append-only audit log with the response's real status.

Errors have one shape, `{"error": {"status": 404, "code": "not_found", "message": ...}}`, and
lists one envelope, `{"items": [...], "limit": 50, "offset": 0, "next_offset": 50 | null}`;
the OpenAPI document (`/openapi.json`, behind a token) describes both exactly. The SQL lives in
`storage.queries`.

Layout (FastAPI's full-stack template): `app` builds the app, `edge` is the middleware every
request passes first, `deps` holds every dependency, `schemas` every request and response model,
`errors` the error shape, `routers/` one router per resource.
"""

from __future__ import annotations

from services.api.app import create_app

__all__ = ["create_app"]
