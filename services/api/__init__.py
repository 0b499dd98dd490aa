"""The analysts' REST API (`distillguard serve`): accounts ranked by risk, verdicts, campaigns,
events, reports, alerts and webhooks, the audit log and tokens. Every route but `/healthz` needs
a bearer token; analysts read, admins also manage tokens and webhooks and read the audit log,
ingest tokens only post events. Every view of an account's or a campaign's evidence is written
to the append-only audit log.

Errors have one shape, `{"error": {"status": 404, "code": "not_found", "message": ...}}`, and
lists one envelope, `{"items": [...], "limit": 50, "offset": 0, "next_offset": 50 | null}`;
the OpenAPI document (`/openapi.json`, behind a token) describes both exactly. The SQL lives in
`storage.queries`.

Layout (FastAPI's full-stack template): `app` builds the app, `deps` holds every dependency,
`schemas` every request and response model, `errors` the error shape, `routers/` one router per
resource.
"""

from __future__ import annotations

from services.api.app import create_app

__all__ = ["create_app"]
