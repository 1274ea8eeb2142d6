"""An environment's context sampling (opt-in): the ``sampling`` field of create/update/read, its checks (422
with pointers), its server-made salt (kept while sampling stays on, never shown, audited or logged), and its
publication by the real syncer: the policy reaches Redis through the outbox job of the environment
change, and is withdrawn with the sample when sampling is turned off or the environment is deleted."""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import pytest
import sqlalchemy as sa
from cp_helpers import Api, rows
from cp_sampling_helpers import ENVS, POLICY, PROD, P, SamplingStack
from fastapi.testclient import TestClient

from flagyard.contracts.sampling import SamplingPolicy, policy_key, read_samples
from flagyard.rule_engine import limits


def details(response: Any) -> list[tuple[str, str]]:
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "validation_error"
    return [(d["path"], d["message"]) for d in response.json()["details"]]


# --- the API field --------------------------------------------------------------------------------


def test_sampling__default__off_everywhere(client: TestClient, sampling: SamplingStack) -> None:
    sampling.api.project()
    assert client.get(PROD).json()["sampling"] is None
    assert [e["sampling"] for e in client.get(ENVS).json()["items"]] == [None, None]
    assert sampling.salt() is None


def test_sampling__created_on__shown_without_salt_and_salt_stored(
    client: TestClient, sampling: SamplingStack
) -> None:
    sampling.api.project(envs=())
    r = sampling.create_prod()
    assert r.json()["sampling"] == POLICY
    assert client.get(PROD).json()["sampling"] == POLICY
    salt = sampling.salt()
    assert salt is not None
    assert re.fullmatch(r"[0-9a-f]{32}", salt)
    assert salt not in r.text
    # An environment without flags or segments still gets a job, so the syncer publishes the policy.
    assert ("environment", "prod", False) in rows(
        sampling.engine, "SELECT entity_type, entity_key, deleted FROM outbox"
    )


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        (
            {"attributes": ["plan", "country", "bad attr"], "hashed": []},
            [("/sampling/attributes/2", "not an attribute path (1-4 dotted parts of A-Z a-z 0-9 _ $ -)")],
        ),
        (
            {"attributes": ["plan"], "hashed": ["email", "plan"]},
            [("/sampling/hashed/1", "'plan' is named twice")],
        ),
        (
            {"attributes": ["a.b.c.d.e"], "hashed": [""]},
            [
                ("/sampling/attributes/0", "not an attribute path (1-4 dotted parts of A-Z a-z 0-9 _ $ -)"),
                ("/sampling/hashed/0", "not an attribute path (1-4 dotted parts of A-Z a-z 0-9 _ $ -)"),
            ],
        ),
        (
            {"attributes": [f"a{i}" for i in range(limits.MAX_SAMPLE_ATTRIBUTES)], "hashed": ["email"]},
            [
                (
                    "/sampling/attributes",
                    f"{limits.MAX_SAMPLE_ATTRIBUTES + 1} attributes, at most {limits.MAX_SAMPLE_ATTRIBUTES}",
                )
            ],
        ),
        (
            {"attributes": [], "hashed": []},
            [("/sampling", "names no attribute; send null to turn sampling off")],
        ),
    ],
    ids=["bad-path", "duplicate", "two-bad", "too-many", "empty"],
)
def test_sampling__invalid_policy__422_with_pointers_and_nothing_changed(
    client: TestClient, sampling: SamplingStack, policy: dict[str, Any], expected: list[Any]
) -> None:
    sampling.api.project()
    assert details(client.patch(PROD, json={"sampling": policy}, headers={"If-Match": '"1"'})) == expected
    assert details(client.post(ENVS, json={"key": "qa", "name": "QA", "sampling": policy})) == expected
    assert client.get(PROD).json()["revision"] == 1
    assert rows(sampling.engine, "SELECT count(*) FROM environments WHERE sampling IS NOT NULL")[0][0] == 0


def test_sampling__salt_or_non_string__refused_by_the_schema(client: TestClient, api: Api) -> None:
    api.project()
    r = client.patch(
        PROD, json={"sampling": {"attributes": ["plan"], "salt": "ab" * 16}}, headers={"If-Match": '"1"'}
    )
    assert ("/sampling/salt", "unknown field") in details(r)
    r = client.patch(PROD, json={"sampling": {"attributes": [7]}}, headers={"If-Match": '"1"'})
    assert [path for path, _ in details(r)] == ["/sampling/attributes/0"]


def test_sampling__updated__salt_kept_while_on_dropped_when_off_new_when_on_again(
    sampling: SamplingStack,
) -> None:
    sampling.api.project()
    on = sampling.patch({"sampling": POLICY})
    assert (on["sampling"], on["revision"]) == (POLICY, 2)
    salt = sampling.salt()
    assert salt is not None

    changed = sampling.patch({"sampling": {"attributes": ["plan"], "hashed": ["targeting_key"]}})
    assert changed["sampling"] == {"attributes": ["plan"], "hashed": ["targeting_key"]}
    assert sampling.salt() == salt  # hashes in the sample stay comparable

    same = sampling.patch({"name": "PROD", "sampling": changed["sampling"]})
    assert same["revision"] == changed["revision"] == 3  # nothing changed, no new revision

    untouched = sampling.patch({"description": "live"})
    assert untouched["sampling"] == changed["sampling"]
    assert sampling.salt() == salt

    off = sampling.patch({"sampling": None})
    assert off["sampling"] is None
    assert sampling.salt() is None

    again = sampling.patch({"sampling": POLICY})
    assert again["sampling"] == POLICY
    renewed = sampling.salt()
    assert renewed is not None
    assert renewed != salt


def test_sampling__changed__audited_without_salt_and_one_environment_job_per_change(
    client: TestClient, sampling: SamplingStack
) -> None:
    sampling.api.project()
    sampling.patch({"sampling": POLICY})
    sampling.patch({"description": "no sampling change"})
    sampling.patch({"sampling": None})
    entries = client.get(f"{P}/shop/audit").json()["items"]
    updates = [e for e in entries if e["resource_type"] == "environment" and e["action"] == "updated"]
    paths = sorted(d["path"] for e in updates for d in e["diff"] if d["path"].startswith("/sampling"))
    assert paths == ["/sampling", "/sampling"], updates
    jobs_ = rows(
        sampling.engine,
        "SELECT version FROM outbox WHERE entity_type = 'environment' AND NOT deleted ORDER BY id",
    )
    assert [v for (v,) in jobs_] == [
        2,
        4,
    ]  # sampling on (revision 2) and off (revision 4), not the description


def test_sampling__writer_key__403(client: TestClient, api: Api) -> None:
    api.project()
    writer = api.key("writer")
    r = client.patch(
        PROD,
        json={"sampling": POLICY},
        headers={"If-Match": '"1"', "Authorization": f"Bearer {writer}"},
    )
    assert r.status_code == 403, r.text


def test_sampling__salt__never_in_responses_audit_idempotency_records_or_logs(
    client: TestClient,
    sampling: SamplingStack,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    sampling.api.project(envs=())
    created = sampling.create_prod(**{"Idempotency-Key": "c1"})
    updated = sampling.patch({"sampling": {"attributes": ["plan"], "hashed": ["email"]}})
    sampling.run_jobs()
    salt = sampling.salt()
    assert salt is not None
    prod = sampling.env_id()
    assert sampling.published(prod) == SamplingPolicy(("plan",), ("email",), salt)  # it is real
    seen = [
        created.text,
        json.dumps(updated),
        client.get(PROD).text,
        client.get(ENVS).text,
        client.get(f"{P}/shop/audit").text,
        client.get("/api/v1/audit").text,
        repr(sampling.published(prod)),
        caplog.text,
        capsys.readouterr().out,
        *(
            json.dumps([list(map(str, row)) for row in rows(sampling.engine, f"SELECT * FROM {table}")])
            for table in ("audit_log", "idempotency_records", "outbox")
        ),
    ]
    for text in seen:
        assert salt not in text
        assert salt[:12] not in text


# --- the syncer -----------------------------------------------------------------------------------


def test_syncer__turned_on_then_changed__policy_published_with_the_same_salt(sampling: SamplingStack) -> None:
    sampling.api.project()
    sampling.api.flag()
    sampling.run_jobs()
    prod = sampling.env_id()
    assert sampling.published(prod) is None

    sampling.sample_prod()
    salt = sampling.salt()
    assert salt is not None
    assert sampling.published(prod) == SamplingPolicy(
        ("plan", "country"), ("targeting_key", "user.email"), salt
    )
    assert sampling.published(sampling.env_id("dev")) is None

    sampling.patch({"sampling": {"attributes": ["country"], "hashed": ["targeting_key"]}})
    sampling.run_jobs()
    assert sampling.published(prod) == SamplingPolicy(("country",), ("targeting_key",), salt)


def test_syncer__turned_off__policy_and_stored_sample_deleted(sampling: SamplingStack) -> None:
    sampling.api.project()
    prod = sampling.sample_prod()
    sampling.store(prod, [{"plan": "pro"}, {"plan": "free"}])
    assert len(read_samples(sampling.redis, sampling.prefix, prod)) == 2

    sampling.patch({"sampling": None})
    sampling.run_jobs()
    assert sampling.published(prod) is None
    assert sampling.sampling_keys_held(prod) == 0


def test_syncer__created_with_sampling_and_no_flags__policy_published(sampling: SamplingStack) -> None:
    sampling.api.project(envs=())
    sampling.create_prod()
    sampling.run_jobs()
    policy = sampling.published(sampling.env_id())
    assert policy is not None
    assert policy.hashed == ("targeting_key", "user.email")


def test_syncer__environment_deleted__sampling_keys_gone(client: TestClient, sampling: SamplingStack) -> None:
    sampling.api.project()
    sampling.api.flag()
    prod = sampling.sample_prod()
    sampling.store(prod, [{"plan": "pro"}])
    assert sampling.sampling_keys_held(prod) == 3

    r = client.delete(PROD, headers={"If-Match": sampling.api.etag(PROD)})
    assert r.status_code == 204, r.text
    sampling.run_jobs()
    assert sampling.sampling_keys_held(prod) == 0


def test_syncer__project_deleted__every_environment_s_sampling_keys_gone(
    client: TestClient, sampling: SamplingStack
) -> None:
    sampling.api.project()
    sampling.patch({"sampling": POLICY})
    sampling.patch({"sampling": POLICY}, path=f"{ENVS}/dev")
    sampling.run_jobs()
    ids = [sampling.env_id("prod"), sampling.env_id("dev")]
    assert all(sampling.published(i) is not None for i in ids)
    r = client.delete(f"{P}/shop", headers={"If-Match": sampling.api.etag(f"{P}/shop")})
    assert r.status_code == 204, r.text
    sampling.run_jobs()
    for i in ids:
        assert sampling.sampling_keys_held(i) == 0


def test_reconcile__policy_lost_changed_or_left_over__repaired(sampling: SamplingStack) -> None:
    syncer, rds, prefix = sampling.syncer, sampling.redis, sampling.prefix
    sampling.api.project()
    sampling.api.flag()
    sampling.patch({"sampling": POLICY})
    syncer.reconcile()
    prod, dev = sampling.env_id(), sampling.env_id("dev")
    wanted = SamplingPolicy(("plan", "country"), ("targeting_key", "user.email"), str(sampling.salt()))
    assert sampling.published(prod) == wanted
    assert syncer.reconcile() == 0  # in sync: nothing to repair

    rds.delete(policy_key(prefix, prod))  # lost
    rds.set(policy_key(prefix, dev), b"{}")  # not the contract, and dev does not sample
    sampling.store(dev, [{"plan": "pro"}])  # a sample left over in an environment that does not sample
    assert syncer.reconcile() == 2
    assert sampling.published(prod) == wanted
    assert sampling.sampling_keys_held(dev) == 0

    rds.set(policy_key(prefix, prod), b'{"attributes":["plan"],"hashed":[],"salt":"' + b"0" * 32 + b'"}')
    assert syncer.reconcile() == 1
    assert sampling.published(prod) == wanted


def test_restore__redis_lost_everything__policy_restored_with_the_environment(
    sampling: SamplingStack,
) -> None:
    sampling.api.project()
    sampling.api.flag()
    prod = sampling.sample_prod()
    assert sampling.published(prod) is not None
    sampling.redis.flushdb()
    sampling.syncer.reconcile()
    policy = sampling.published(prod)
    assert policy is not None
    assert policy.salt == sampling.salt()


def test_syncer__stored_policy_out_of_contract__logged_without_values_and_redis_kept(
    sampling: SamplingStack,
) -> None:
    sampling.api.project()
    prod = sampling.sample_prod()
    before = sampling.redis.get(policy_key(sampling.prefix, prod))
    with sampling.engine.begin() as conn:  # written past the API
        conn.execute(
            sa.text("UPDATE environments SET sampling = CAST(:s AS json) WHERE key = 'prod'"),
            {"s": json.dumps({"attributes": ["bad attr"], "hashed": []})},
        )
    assert sampling.syncer.reconcile() == 0
    assert sampling.redis.get(policy_key(sampling.prefix, prod)) == before
