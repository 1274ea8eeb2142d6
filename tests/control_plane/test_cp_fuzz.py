"""Schemathesis fuzzes every operation of the published OpenAPI spec: bad input never yields a 500.

Bounded: a few derandomized examples per operation (Hypothesis driven directly with each operation's
Schemathesis strategy), against a project that exists so that many requests get past the lookups, with
the admin key. Every error must still have the common error body.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
import schemathesis
from cp_helpers import ADMIN_KEY, Api
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis.core import NOT_SET

from flagyard.control_plane.main import create_app
from flagyard.control_plane.settings import Settings

SPEC = create_app(
    Settings(outbox_relay_interval_seconds=0, outbox_dispatch="inline", access_log=False)
).openapi()
OPERATIONS = [result.ok() for result in schemathesis.openapi.from_dict(SPEC).get_all_operations()]
EXAMPLES = int(os.environ.get("FLAGYARD_FUZZ_EXAMPLES", "6"))


@pytest.mark.parametrize("operation", OPERATIONS, ids=[op.label for op in OPERATIONS])
def test_fuzz__generated_requests__no_server_error_and_error_body(
    operation: Any, client: TestClient, api: Api
) -> None:
    api.project("shop", envs=("dev", "prod"))
    api.segment()
    api.flag()

    @given(case=operation.as_strategy())
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any) -> None:
        path_parameters = dict(case.path_parameters or {})
        if "project" in path_parameters and case.method != "DELETE":
            path_parameters["project"] = "shop"  # get past the project lookup into the operation
        path = operation.path.format(**path_parameters)
        headers = {str(k): str(v) for k, v in (case.headers or {}).items()}
        headers["Authorization"] = f"Bearer {ADMIN_KEY}"
        kwargs: dict[str, Any] = {"params": case.query or None, "headers": headers}
        if case.body is not NOT_SET:
            kwargs["json"] = case.body
        response = client.request(case.method, path, **kwargs)
        assert response.status_code < 500, (case.method, path, case.body, response.text)
        if response.status_code >= 400:
            body = response.json()
            assert {"code", "message", "details"} <= set(body), body

    run()
