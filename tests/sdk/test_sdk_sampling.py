"""SDK context samples (sdk/_report.py): in local mode the client sends a few evaluated contexts with its
reports only once a report's answer asked for them, within its bounds; in remote mode never (the data plane
samples what it receives). A real data plane and Redis; the data plane keeps only what the policy allows."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

import pytest
from sdk_helpers import ENV_ID, SDK_KEY, Env, ThreadPlane, seeded_env, stopping_planes, wait_until

from flagyard.contracts.sampling import SamplingPolicy, hash_value, put_policy, read_samples, samples_key
from flagyard.rule_engine import limits
from flagyard.sdk import FlagyardClient
from flagyard.sdk._report import EvaluationReporter

SALT = "ab" * 16
POLICY = SamplingPolicy(attributes=("country",), hashed=("targeting_key",), salt=SALT)


@pytest.fixture
def env() -> Iterator[Env]:
    yield from seeded_env()


@pytest.fixture
def planes() -> Iterator[list[ThreadPlane]]:
    yield from stopping_planes()


@contextmanager
def reporting_client(
    env: Env, planes: list[ThreadPlane], mode: Literal["local", "remote"], policy: SamplingPolicy | None
) -> Iterator[tuple[FlagyardClient, EvaluationReporter]]:
    """The environment's sampling ``policy`` in Redis (as the syncer writes it; ``None``: it does not
    sample), then a data plane and a client of it in ``mode`` that reports only when flushed."""
    if policy is not None:
        put_policy(env.rds, env.prefix, ENV_ID, policy)
    plane = ThreadPlane(env.settings()).start()
    planes.append(plane)
    with FlagyardClient(target=plane.target, sdk_key=SDK_KEY, mode=mode, report_interval=3600) as client:
        reporter = client.reporter
        assert reporter is not None
        yield client, reporter


def first_report(client: FlagyardClient, reporter: EvaluationReporter) -> bool:
    """Evaluate once and send the report: whether its answer asked for contexts."""
    client.boolean("new-checkout", False, {"targeting_key": "x"})
    assert reporter.flush() is True
    return reporter.sampling


def keeps_no_context(client: FlagyardClient, reporter: EvaluationReporter) -> None:
    """No report asks for contexts, and 20 evaluations keep none."""
    assert first_report(client, reporter) is False
    for i in range(20):
        client.boolean("new-checkout", False, {"targeting_key": f"u-{i}"})
    assert reporter.pending_contexts() == 0


def test_local__contexts_sent_only_after_an_answer_asked_for_them(
    env: Env, planes: list[ThreadPlane]
) -> None:
    with reporting_client(env, planes, "local", POLICY) as (client, reporter):
        for i in range(5):
            client.boolean(
                "new-checkout", False, {"targeting_key": f"before-{i}", "country": "FR", "ssn": "1"}
            )
        assert reporter.pending_contexts() == 0  # nobody asked yet
        assert reporter.flush() is True
        assert reporter.sampling is True  # the answer asked

        for i in range(5):
            client.boolean(
                "new-checkout", False, {"targeting_key": f"after-{i}", "country": "FR", "ssn": "1"}
            )
        assert reporter.pending_contexts() == 5
        assert reporter.flush() is True

        wait_until(lambda: env.rds.hlen(samples_key(env.prefix, ENV_ID)) == 5, 10)
        samples = read_samples(env.rds, env.prefix, ENV_ID)
        assert {s["targeting_key"] for s in samples} == {hash_value(SALT, f"after-{i}") for i in range(5)}
        assert all(set(s) == {"targeting_key", "country"} for s in samples)


def test_local__many_evaluations__at_most_the_rate_and_the_report_bound_kept(
    env: Env, planes: list[ThreadPlane]
) -> None:
    with reporting_client(env, planes, "local", POLICY) as (client, reporter):
        assert first_report(client, reporter) is True

        first = int(time.monotonic())
        for i in range(2000):
            client.boolean("new-checkout", False, {"targeting_key": f"u-{i}"})
        windows = int(time.monotonic()) - first + 1  # the one-second windows the loop touched

        kept = reporter.pending_contexts()
        assert 1 <= kept <= min(limits.MAX_REPORT_CONTEXTS, limits.SAMPLE_RATE_PER_SECOND * windows)


def test_local__environment_does_not_sample__no_context_kept(env: Env, planes: list[ThreadPlane]) -> None:
    with reporting_client(env, planes, "local", None) as (client, reporter):
        keeps_no_context(client, reporter)


def test_remote__never_keeps_contexts_even_when_the_environment_samples(
    env: Env, planes: list[ThreadPlane]
) -> None:
    with reporting_client(env, planes, "remote", POLICY) as (client, reporter):
        keeps_no_context(client, reporter)
