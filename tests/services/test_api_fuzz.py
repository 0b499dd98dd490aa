"""Schemathesis against the served OpenAPI: generated requests (valid and invalid, injection
strings included, as an admin) never get a 5xx, every error body has the one error shape, and
every response conforms to the document: a documented status code and content type, the
documented headers, and a body valid against the documented schema. Runs in-process (ASGI) on
the embedded store."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from core.settings import Settings
from distillguard.wiring import build_api
from services.auth import create_token
from storage import EmbeddedClickHouse
from tests.services.test_api import _event, _verdict

TOKENS: dict[str, str] = {}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def api_schema(chdb_path, tmp_path_factory):
    store = EmbeddedClickHouse(chdb_path, database="dgtest_fuzz")
    store.migrate()
    store.insert("verdicts", [_verdict("acct-a", 0.9, "extraction", 30)])
    store.insert("events", [_event("acct-a", i, f"prompt {i}") for i in range(3)])
    TOKENS["admin"] = create_token(store, "admin", "fuzz")[0]
    config = Settings(
        data_dir=tmp_path_factory.mktemp("fuzz"), detector="volume", embedding_tier="off"
    )
    app = build_api(config, store)
    yield schemathesis.openapi.from_asgi(
        "/openapi.json", app, headers={"Authorization": f"Bearer {TOKENS['admin']}"}
    )
    store.close()  # chDB holds one data folder per process: other tests open their own


def test_no_server_errors_and_responses_as_documented(api_schema) -> None:
    """Every operation, ~15 generated cases each (schemathesis's pytest plugin does not support
    this pytest, so its Hypothesis strategies are driven directly)."""
    headers = {"Authorization": f"Bearer {TOKENS['admin']}"}
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 15

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
        def check(case) -> None:
            response = case.call(headers=headers, timeout=120)
            assert response.status_code < 500, (case.method, case.path, response.text[:300])
            case.validate_response(response, checks=CHECKS, headers=headers)
            if response.status_code >= 400:
                assert set(response.json()) == {"error"}, response.text[:300]

        check()
