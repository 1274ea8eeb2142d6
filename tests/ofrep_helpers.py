"""OFREP bodies checked against the protocol's own OpenAPI document (tests/protocols/data/ofrep-openapi.yaml,
copied unmodified from open-feature/protocol).

Importable by name from any test directory (``tests/`` is on the import path through its conftest).

Two corrections are applied in memory, each a known defect of the document rather than of a server:
``evaluationSuccess``'s value ``oneOf`` lists ``codeDefaultFlag`` (an object without constraints, so it
matches every body) and both ``integerFlag`` and ``floatFlag`` (an integer is a number), so no body can
match exactly one: it is checked as ``anyOf``. And its ``reason`` enum lacks ``DEFAULT``, which OpenFeature
defines, ADR-0006's own example sends and flagd's OFREP server sends: ``DEFAULT`` is added.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SPEC = Path(__file__).resolve().parent / "protocols" / "data" / "ofrep-openapi.yaml"
_URI = "urn:ofrep-openapi"


@functools.cache
def _registry() -> Registry:
    spec = yaml.safe_load(SPEC.read_text())
    success = spec["components"]["schemas"]["evaluationSuccess"]
    success["allOf"][0]["properties"]["reason"]["enum"].append("DEFAULT")
    success["allOf"][1]["anyOf"] = success["allOf"][1].pop("oneOf")
    resource: Resource[Any] = Resource.from_contents(spec, default_specification=DRAFT202012)
    return Registry().with_resource(_URI, resource)


def schema_errors(schema: str, body: Any) -> list[str]:
    """Why ``body`` is not a valid ``components/schemas/<schema>`` of OFREP (empty: it is)."""
    validator = Draft202012Validator({"$ref": f"{_URI}#/components/schemas/{schema}"}, registry=_registry())
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(body)]


def assert_schema(schema: str, body: Any) -> None:
    errors = schema_errors(schema, body)
    assert not errors, f"not an OFREP {schema}: {errors} in {body!r}"
