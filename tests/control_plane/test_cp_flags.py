"""Flags: creation, rule-engine validation (422 with JSON pointers), reads, updates, toggle, deletion."""

from __future__ import annotations

import sqlalchemy as sa
from cp_helpers import Api, rows
from fastapi.testclient import TestClient

F = "/api/v1/projects/shop/flags"

RULE = {
    "id": "r1",
    "clauses": [{"attribute": "country", "operator": "in", "values": ["NL"]}],
    "variant": "on",
}


def test_flag_create__valid__version_1_salt_and_off_configs(client: TestClient, api: Api) -> None:
    api.project()
    r = client.post(
        F,
        json={
            "key": "checkout",
            "name": "Checkout",
            "type": "boolean",
            "variants": {"on": True, "off": False},
            "tags": ["web"],
            "environments": {"prod": {"enabled": True, "rules": [RULE], "off_variant": "off"}},
        },
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["version"] == 1
    assert r.headers["etag"] == '"1"'
    assert len(body["salt"]) == 16
    assert body["environments"]["dev"]["enabled"] is False
    assert body["environments"]["prod"]["rules"][0]["id"] == "r1"
    assert body["environments"]["prod"]["rules"][0]["clauses"][0]["negate"] is False  # canonical form stored


def test_flag_create__two_flags__different_salts(api: Api) -> None:
    api.project()
    assert api.flag(key="a")["salt"] != api.flag(key="b")["salt"]


def test_flag_create__rule_with_undeclared_variant__422_pointer_into_environment(
    client: TestClient, api: Api
) -> None:
    api.project()
    bad = {**RULE, "variant": "maybe"}
    r = client.post(
        F,
        json={
            "key": "f",
            "name": "F",
            "type": "boolean",
            "variants": {"on": True, "off": False},
            "environments": {"prod": {"rules": [bad]}},
        },
    )
    assert r.status_code == 422
    assert r.json()["code"] == "validation_error"
    assert {
        "path": "/environments/prod/rules/0/variant",
        "message": "variant 'maybe' is not declared in variants",
    } in (r.json()["details"])


def test_flag_create__several_problems__one_detail_each(client: TestClient, api: Api) -> None:
    api.project()
    clause = {"attribute": "age", "operator": "lt", "values": ["old"]}
    r = client.post(
        F,
        json={
            "key": "f",
            "name": "F",
            "type": "boolean",
            "variants": {"on": True, "off": False},
            "environments": {
                "dev": {
                    "default_variant": "nope",
                    "rules": [{"id": "r", "clauses": [clause], "variant": "on"}],
                }
            },
        },
    )
    assert r.status_code == 422
    paths = {d["path"] for d in r.json()["details"]}
    assert paths == {"/environments/dev/default_variant", "/environments/dev/rules/0/clauses/0/values/0"}


def test_flag_create__variant_of_wrong_type__422_at_variant(client: TestClient, api: Api) -> None:
    api.project()
    r = client.post(F, json={"key": "f", "name": "F", "type": "boolean", "variants": {"on": "yes"}})
    assert r.status_code == 422
    assert r.json()["details"][0]["path"] == "/variants/on"


def test_flag_create__missing_segment__422(client: TestClient, api: Api) -> None:
    api.project()
    rule = {"id": "r", "clauses": [{"operator": "segment_match", "values": ["ghosts"]}], "variant": "on"}
    r = client.post(
        F,
        json={
            "key": "f",
            "name": "F",
            "type": "boolean",
            "variants": {"on": True},
            "environments": {"dev": {"rules": [rule]}},
        },
    )
    assert r.status_code == 422
    assert r.json()["details"] == [
        {"path": "/environments/dev/rules/0/clauses/0/values/0", "message": "segment 'ghosts' does not exist"}
    ]


def test_flag_create__unknown_environment__422(client: TestClient, api: Api) -> None:
    api.project()
    r = client.post(
        F,
        json={
            "key": "f",
            "name": "F",
            "type": "boolean",
            "variants": {"on": True},
            "environments": {"qa": {}},
        },
    )
    assert r.status_code == 422
    assert r.json()["details"][0]["path"] == "/environments/qa"


def test_flag_create__unknown_nested_field__422_pointer(client: TestClient, api: Api) -> None:
    api.project()
    r = client.post(
        F,
        json={
            "key": "f",
            "name": "F",
            "type": "boolean",
            "variants": {"on": True},
            "environments": {"dev": {"rules": [{**RULE, "colour": 1}]}},
        },
    )
    assert r.status_code == 422
    assert {"path": "/environments/dev/rules/0/colour", "message": "unknown field"} in r.json()["details"]


def test_flag_create__nan_variant__422_not_500(client: TestClient, api: Api) -> None:
    api.project()
    content = b'{"key": "f", "name": "F", "type": "object", "variants": {"a": {"x": NaN}}}'
    r = client.post(F, content=content, headers={"Content-Type": "application/json"})
    assert r.status_code == 422


def test_flag_create__integer_beyond_64_bits__422_names_it(client: TestClient, api: Api) -> None:
    api.project()
    r = client.post(F, json={"key": "f", "name": "F", "type": "object", "variants": {"a": {"n": 2**63}}})
    assert r.status_code == 422
    assert {
        "path": "/variants/a/n",
        "message": "NaN, Infinity and integers beyond 64 bits are not accepted",
    } in r.json()["details"]
    assert client.get(f"{F}/f").status_code == 404


def test_flag_create__integer_at_64_bit_limits__stored_and_read_back_exactly(
    client: TestClient, api: Api
) -> None:
    api.project()
    limits = {"low": -(2**63), "high": 2**63 - 1}
    r = client.post(F, json={"key": "f", "name": "F", "type": "object", "variants": {"a": limits}})
    assert r.status_code == 201, r.text
    assert client.get(f"{F}/f").json()["variants"] == {"a": limits}
    assert client.get(f"{F}/f/versions/1").json()["snapshot"]["variants"] == {"a": limits}


def test_flag_create__duplicate_live_key__409(client: TestClient, api: Api) -> None:
    api.project()
    api.flag()
    r = client.post(F, json={"key": "checkout", "name": "x", "type": "boolean", "variants": {"on": True}})
    assert r.status_code == 409


def test_flag_create__prerequisite_cycle__422(client: TestClient, api: Api) -> None:
    api.project()
    api.flag(key="a")
    pre = {"flag": "a", "variant": "on"}
    api.flag(key="b", environments={"dev": {"prerequisites": [pre]}})
    etag = api.etag(f"{F}/a")
    r = client.patch(
        f"{F}/a/environments/dev",
        json={"prerequisites": [{"flag": "b", "variant": "on"}]},
        headers={"If-Match": etag},
    )
    assert r.status_code == 422
    assert "prerequisite cycle" in r.json()["details"][0]["message"]


def test_flag_list__filters_and_pages__by_key_order(client: TestClient, api: Api) -> None:
    api.project()
    api.flag(key="alpha", tags=["web"])
    api.flag(key="beta")
    api.flag(key="gamma", tags=["web"])
    assert [f["key"] for f in client.get(F, params={"tag": "web"}).json()["items"]] == ["alpha", "gamma"]
    assert [f["key"] for f in client.get(F, params={"q": "ET"}).json()["items"]] == ["beta"]
    page = client.get(F, params={"limit": 2}).json()
    assert [f["key"] for f in page["items"]] == ["alpha", "beta"]
    assert page["items"][0]["enabled"] == {"dev": False, "prod": False}
    rest = client.get(F, params={"limit": 2, "cursor": page["next_cursor"]}).json()
    assert [f["key"] for f in rest["items"]] == ["gamma"]
    combined = client.get(F, params={"tag": "web", "cursor": "alpha", "q": "a", "limit": 5}).json()
    assert [f["key"] for f in combined["items"]] == ["gamma"]
    assert client.get(F, params={"q": "_"}).json()["items"] == []  # a literal underscore, not a wildcard


def test_flag_patch__definition_change__new_version_outbox_for_every_env_it_reaches(
    client: TestClient, api: Api, engine: sa.Engine
) -> None:
    api.project()
    api.flag()
    r = client.patch(
        f"{F}/checkout", json={"name": "Checkout v2", "comment": "rename"}, headers={"If-Match": '"1"'}
    )
    assert r.status_code == 200
    assert r.json()["version"] == 2
    assert r.headers["etag"] == '"2"'
    # the name is not served: no environment changes, so none is told
    assert rows(engine, "SELECT version FROM outbox WHERE entity_key = 'checkout' AND version = 2") == []
    r = client.patch(
        f"{F}/checkout", json={"variants": {"on": True, "off": False, "x": True}}, headers={"If-Match": '"2"'}
    )
    assert r.status_code == 200
    outbox = rows(engine, "SELECT version FROM outbox WHERE entity_key = 'checkout' AND version = 3")
    assert len(outbox) == 2


def test_flag_patch__no_change__same_version(client: TestClient, api: Api) -> None:
    api.project()
    api.flag()
    r = client.patch(f"{F}/checkout", json={"name": "Checkout"}, headers={"If-Match": '"1"'})
    assert r.status_code == 200
    assert r.json()["version"] == 1


def test_flag_patch__removing_variant_used_by_env_rule__422_and_unchanged(
    client: TestClient, api: Api
) -> None:
    api.project()
    api.flag(environments={"prod": {"rules": [RULE]}})
    r = client.patch(f"{F}/checkout", json={"variants": {"off": False}}, headers={"If-Match": '"1"'})
    assert r.status_code == 422
    assert r.json()["details"][0]["path"] == "/environments/prod/rules/0/variant"
    assert client.get(f"{F}/checkout").json()["variants"] == {"on": True, "off": False}


def test_flag_patch__removing_variant_a_dependent_needs__422(client: TestClient, api: Api) -> None:
    api.project()
    api.flag(key="a")
    api.flag(key="b", environments={"prod": {"prerequisites": [{"flag": "a", "variant": "on"}]}})
    r = client.patch(f"{F}/a", json={"variants": {"off": False}}, headers={"If-Match": '"1"'})
    assert r.status_code == 422
    assert "flag 'b' in environment 'prod'" in r.json()["details"][0]["message"]


def test_flag_patch__explicit_null_name__422(client: TestClient, api: Api) -> None:
    api.project()
    api.flag()
    r = client.patch(f"{F}/checkout", json={"name": None}, headers={"If-Match": '"1"'})
    assert r.status_code == 422
    assert r.json()["details"] == [{"path": "/name", "message": "may not be null"}]


def test_env_config_patch__rules__version_bumped_outbox_only_that_env(
    client: TestClient, api: Api, engine: sa.Engine
) -> None:
    api.project()
    api.flag()
    r = client.patch(
        f"{F}/checkout/environments/prod",
        json={"rules": [RULE], "enabled": True},
        headers={"If-Match": '"1"'},
    )
    assert r.status_code == 200, r.text
    assert r.json()["version"] == 2
    assert r.json()["rules"][0]["variant"] == "on"
    got = client.get(f"{F}/checkout/environments/prod")
    assert got.headers["etag"] == '"2"'
    assert got.json()["enabled"] is True
    assert rows(
        engine,
        "SELECT e.key FROM outbox o JOIN environments e ON e.id = o.environment_id WHERE o.version = 2",
    ) == [("prod",)]


def test_env_config_patch__invalid_split__422_body_pointer(client: TestClient, api: Api) -> None:
    api.project()
    api.flag()
    split = {"variations": [{"variant": "on", "weight": 10}, {"variant": "off", "weight": 10}]}
    r = client.patch(
        f"{F}/checkout/environments/dev", json={"default_split": split}, headers={"If-Match": '"1"'}
    )
    assert r.status_code == 422
    assert r.json()["details"][0]["path"] == "/default_split/variations"


def test_env_config_patch__stale_etag__412(client: TestClient, api: Api) -> None:
    api.project()
    api.flag()
    assert client.post(f"{F}/checkout/environments/dev/toggle", json={"enabled": True}).status_code == 200
    r = client.patch(f"{F}/checkout/environments/prod", json={"enabled": True}, headers={"If-Match": '"1"'})
    assert r.status_code == 412


def test_env_config_get__unknown_env__404(client: TestClient, api: Api) -> None:
    api.project()
    api.flag()
    assert client.get(f"{F}/checkout/environments/qa").status_code == 404


def test_env_config_writes__missing_project_flag_or_environment__404_naming_which(
    client: TestClient, api: Api
) -> None:
    # Given a project with a flag, and a second project without environments that has a flag too
    api.project()
    api.flag()
    api.project("empty", envs=())
    api.flag(project="empty")
    cases = {
        f"{F}/nope/environments/prod": "flag 'nope' does not exist in project 'shop'",
        f"{F}/checkout/environments/qa": "environment 'qa' does not exist in project 'shop'",
        "/api/v1/projects/ghost/flags/checkout/environments/prod": "project 'ghost' does not exist",
        "/api/v1/projects/empty/flags/checkout/environments/prod": (
            "environment 'prod' does not exist in project 'empty'"
        ),
    }
    for path, message in cases.items():
        # When the configuration is patched or toggled there
        patched = client.patch(path, json={"enabled": True}, headers={"If-Match": "*"})
        toggled = client.post(f"{path}/toggle", json={"enabled": True})
        # Then both say what is missing, and nothing was written
        assert (patched.status_code, patched.json()["message"]) == (404, message), path
        assert (toggled.status_code, toggled.json()["message"]) == (404, message), path
    assert client.get(f"{F}/checkout").json()["version"] == 1


def test_env_config_writes__key_of_another_project__403_nothing_written(client: TestClient, api: Api) -> None:
    api.project()
    api.flag()
    api.project("other")
    writer = api.key("writer", project="other")
    headers = {"Authorization": f"Bearer {writer}", "If-Match": "*"}
    patched = client.patch(f"{F}/checkout/environments/prod", json={"enabled": True}, headers=headers)
    toggled = client.post(f"{F}/checkout/environments/prod/toggle", json={"enabled": True}, headers=headers)
    assert (patched.status_code, toggled.status_code) == (403, 403)
    assert client.get(f"{F}/checkout").json()["version"] == 1


def test_toggle__without_if_match__200_new_version(client: TestClient, api: Api, engine: sa.Engine) -> None:
    api.project()
    api.flag()
    r = client.post(f"{F}/checkout/environments/prod/toggle", json={"enabled": True, "comment": "launch"})
    assert r.status_code == 200
    assert r.json()["enabled"] is True
    assert r.json()["version"] == 2
    assert rows(engine, "SELECT action, comment FROM flag_versions WHERE version = 2") == [
        ("toggled", "launch")
    ]


def test_toggle__same_state__no_new_version(client: TestClient, api: Api) -> None:
    api.project()
    api.flag()
    r = client.post(f"{F}/checkout/environments/prod/toggle", json={"enabled": False})
    assert r.status_code == 200
    assert r.json()["version"] == 1


def test_toggle__stale_if_match_given__412(client: TestClient, api: Api) -> None:
    api.project()
    api.flag()
    r = client.post(
        f"{F}/checkout/environments/prod/toggle", json={"enabled": True}, headers={"If-Match": '"9"'}
    )
    assert r.status_code == 412


def test_flag_delete__then_recreate__key_reused_with_higher_version(
    client: TestClient, api: Api, engine: sa.Engine
) -> None:
    api.project()
    api.flag()
    assert client.delete(f"{F}/checkout").status_code == 428
    assert client.delete(f"{F}/checkout", headers={"If-Match": '"1"'}).status_code == 204
    assert client.get(f"{F}/checkout").status_code == 404
    markers = rows(engine, "SELECT version, deleted FROM outbox WHERE entity_key = 'checkout' AND deleted")
    assert markers == [(2, True), (2, True)]
    again = api.flag()
    assert again["version"] == 3
    assert client.get(f"{F}/checkout/versions").json()["items"][0]["version"] == 3


def test_flag_delete__is_prerequisite__409_listing_dependents(client: TestClient, api: Api) -> None:
    api.project()
    api.flag(key="a")
    api.flag(key="b", environments={"dev": {"prerequisites": [{"flag": "a", "variant": "on"}]}})
    r = client.delete(f"{F}/a", headers={"If-Match": '"1"'})
    assert r.status_code == 409
    assert r.json()["details"] == [
        {"path": "/environments/dev", "message": "flag 'b' has it as prerequisite"}
    ]
