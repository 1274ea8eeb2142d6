"""The demo of ``flagyard up``: on first run, a project with two environments, a few flags and keys.

Everything is written through the control plane's service layer in one transaction, so versions, audit
entries and outbox rows are exactly those of the same changes made over REST; after commit the outbox rows
are enqueued for the syncer (the relay and the syncer's reconcile would pick them up anyway). The keys are
returned to be shown once; only their SHA-256 is stored.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from flagyard.contracts.redis_connect import redis_client
from flagyard.control_plane import schemas
from flagyard.control_plane.outbox import deliver
from flagyard.control_plane.services import flags, keys, projects
from flagyard.control_plane.services.common import Tx
from flagyard.control_plane.services.keys import ensure_bootstrap_key
from flagyard.control_plane.settings import Settings
from flagyard.db.engine import make_sessionmaker
from flagyard.db.models import Project

from .admin_key_cmd import audit_created, insert_admin_key

DEMO_PROJECT = "demo"
DEMO_ADMIN_NAME = "demo admin (flagyard up)"
DEMO_ENVIRONMENTS = ("development", "production")
KILL_SWITCH = "payments-enabled"
"""A boolean flag that is on; turning it off is the demo's kill switch."""
_SEED_LOCK = zlib.crc32(b"flagyard up: demo seed")

_ON_OFF = {"on": True, "off": False}
_GERMANY = {"attribute": "country", "operator": "eq", "values": ["DE"]}
DEMO_FLAGS: list[dict[str, Any]] = [
    {
        "key": KILL_SWITCH,
        "name": "Payments enabled",
        "description": "Kill switch: turn it off and checkouts stop taking payments.",
        "type": "boolean",
        "variants": _ON_OFF,
        "environments": {
            env: {"enabled": True, "off_variant": "off", "default_variant": "on"} for env in DEMO_ENVIRONMENTS
        },
    },
    {
        "key": "search-v2",
        "name": "Search v2",
        "description": "Percentage rollout: 10 % of users (by targeting_key), always the same 10 %.",
        "type": "boolean",
        "variants": _ON_OFF,
        "environments": {
            env: {
                "enabled": True,
                "off_variant": "off",
                "default_split": {
                    "variations": [{"variant": "on", "weight": 1000}, {"variant": "off", "weight": 9000}]
                },
            }
            for env in DEMO_ENVIRONMENTS
        },
    },
    {
        "key": "checkout-config",
        "name": "Checkout configuration",
        "description": "JSON configuration; customers in Germany get their own.",
        "type": "object",
        "variants": {
            "standard": {"currency": "USD", "max_items": 50, "express_shipping": False},
            "germany": {"currency": "EUR", "max_items": 50, "express_shipping": True},
        },
        "environments": {
            env: {
                "enabled": True,
                "off_variant": "standard",
                "default_variant": "standard",
                "rules": [{"id": "germany", "variant": "germany", "clauses": [_GERMANY]}],
            }
            for env in DEMO_ENVIRONMENTS
        },
    },
]


@dataclass
class DemoKeys:
    """The keys created with the demo, in plaintext only in this object (shown once)."""

    admin: str
    sdk: dict[str, str] = field(default_factory=dict)
    """Environment key → SDK key."""


def demo_exists(session: Session) -> bool:
    return session.scalar(sa.select(Project.id).where(Project.key == DEMO_PROJECT)) is not None


def _seed(tx: Tx, admin_key: str) -> DemoKeys:
    audit_created(tx, DEMO_ADMIN_NAME)
    projects.create_project(tx, schemas.ProjectCreate(key=DEMO_PROJECT, name="Demo"))
    for env in DEMO_ENVIRONMENTS:
        projects.create_environment(tx, DEMO_PROJECT, schemas.EnvironmentCreate(key=env, name=env.title()))
    for body in DEMO_FLAGS:
        flags.create_flag(tx, DEMO_PROJECT, schemas.FlagCreate.model_validate({**body, "comment": "demo"}))
    demo = DemoKeys(admin=admin_key)
    for env in DEMO_ENVIRONMENTS:
        result = keys.create_sdk_key(tx, DEMO_PROJECT, env, schemas.SdkKeyCreate(name="demo (flagyard up)"))
        demo.sdk[env] = str(result.body["key"])
    return demo


def seed_demo(settings: Settings, engine: sa.Engine) -> DemoKeys | None:
    """Seed the demo unless it exists (then None). Serialised by an advisory lock, so two ``flagyard up``
    starting at once seed it once. Also inserts the bootstrap admin key into an empty key table first,
    as the control plane would at its start, so that key keeps working next to the demo's."""
    sessions = make_sessionmaker(engine)
    with sessions() as session, session.begin():
        session.execute(sa.select(sa.func.pg_advisory_xact_lock(_SEED_LOCK)))
        if settings.bootstrap_admin_key is not None:
            ensure_bootstrap_key(session, settings.bootstrap_admin_key.get_secret_value())
        if demo_exists(session):
            return None
        actor, admin_key = insert_admin_key(session, DEMO_ADMIN_NAME)
        tx = Tx(session, actor, request_id="flagyard-up-seed")
        demo = _seed(tx, admin_key)
    connection = redis_client(
        settings.redis_url.get_secret_value(),
        socket_timeout=settings.redis_timeout_seconds,
        socket_connect_timeout=settings.redis_timeout_seconds,
    )
    try:
        # A failure only logs: the relay re-enqueues the rows, the syncer's reconcile repairs Redis.
        deliver(sessions, connection, settings.sync_queue, tx.messages())
    finally:
        connection.close()
    return demo
