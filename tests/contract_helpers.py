"""The response contract every suite's control-plane test client enforces: each response is checked
against the OpenAPI document of the app that produced it (``CheckedClient``)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import httpx
from fastapi import FastAPI
from fastapi.testclient import TestClient
from jsonschema import Draft202012Validator, FormatChecker


class ResponseContractError(AssertionError):
    """An answer the OpenAPI document does not describe."""


def _rfc3339(value: object) -> bool:
    """``date-time`` as RFC 3339 means it: a full timestamp with an offset (jsonschema checks no format
    without an optional package)."""
    if not isinstance(value, str):
        return True
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return False
    return "T" in value.upper() and moment.tzinfo is not None


FORMATS = FormatChecker(formats=())
FORMATS.checks("date-time")(_rfc3339)


def _template_pattern(template: str) -> re.Pattern[str]:
    return re.compile(re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)))


class ResponseContract:
    """Checks responses against the OpenAPI document of the app that produced them.

    The route is found the way the app's router finds it (its template is the document's path); a 2xx
    status the operation does not declare, a declared 2xx without a JSON schema (except 204), or a body
    the schema refuses is a :class:`ResponseContractError`. Routes outside the document (``/metrics``,
    ``/docs``) are not checked.
    """

    def __init__(self, app: FastAPI) -> None:
        self.doc = app.openapi()
        self._templates = sorted(
            ((_template_pattern(path), path) for path in self.doc["paths"]),
            key=lambda item: item[1].count("{"),  # a literal segment wins over a parameter
        )
        self._validators: dict[tuple[str, str, str], Draft202012Validator] = {}

    def operation(self, method: str, path: str) -> tuple[str, dict[str, Any]] | None:
        """The document's template and operation for a request, the most literal template first."""
        for pattern, template in self._templates:
            if pattern.fullmatch(path):
                operation = self.doc["paths"][template].get(method.lower())
                return (template, operation) if operation is not None else None
        return None

    def check(self, response: httpx.Response) -> None:
        """A 2xx must be declared with a schema its body matches (a 204 has no body); any other status
        declared with a schema must match it too."""
        status = response.status_code
        found = self.operation(response.request.method, response.request.url.path)
        if found is None:
            return
        template, operation = found
        where = f"{response.request.method} {template} → {status}"
        declared = operation["responses"].get(str(status))
        success = 200 <= status < 300
        if declared is None:
            if success:
                raise ResponseContractError(f"{where}: the status is not declared")
            return
        if status == 204:
            if response.content:
                raise ResponseContractError(f"{where}: a 204 with a body")
            return
        schema = declared.get("content", {}).get("application/json", {}).get("schema")
        if not schema:
            if success:
                raise ResponseContractError(f"{where}: no JSON schema is declared for the body")
            return
        key = (template, response.request.method, str(status))
        validator = self._validators.get(key)
        if validator is None:
            root = {"allOf": [schema], "components": self.doc.get("components", {})}
            validator = Draft202012Validator(root, format_checker=FORMATS)
            self._validators[key] = validator
        errors = sorted(validator.iter_errors(response.json()), key=lambda e: list(e.absolute_path))
        if errors:
            problems = "; ".join(f"/{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors[:5])
            raise ResponseContractError(f"{where}: the body does not match its schema: {problems}")


_CONTRACTS: dict[tuple[tuple[str, str], ...], ResponseContract] = {}


def contract_for(app: FastAPI) -> ResponseContract:
    """The contract of an app, shared by every app with the same routes: rendering the OpenAPI document
    costs about a second, and the suites build an app per test."""
    routes = tuple(
        (getattr(route, "path", ""), ",".join(sorted(getattr(route, "methods", None) or ())))
        for route in app.routes
    )
    contract = _CONTRACTS.get(routes)
    if contract is None:
        contract = _CONTRACTS[routes] = ResponseContract(app)
    return contract


class CheckedClient(TestClient):
    """The test client of the control-plane suites: every 2xx JSON body it receives must match the
    schema its operation publishes, so the whole suite checks the OpenAPI document."""

    def __init__(self, app: FastAPI, *args: Any, **kwargs: Any) -> None:
        super().__init__(app, *args, **kwargs)
        self.contract = contract_for(app)

    def send(self, request: httpx.Request, **kwargs: Any) -> httpx.Response:  # type: ignore[override]
        response = super().send(request, **kwargs)
        if not kwargs.get("stream"):
            self.contract.check(response)
        return response
