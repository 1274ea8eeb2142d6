"""Flags change while apps evaluate them: admin users (``FLAGYARD_LOADTEST_MIXED_ADMIN_USERS``, default 1)
change the flags over REST while every other user evaluates them over gRPC.

Each evaluation user checks that the version it is served of every flag (and the revision of
``ResolveAll``) never goes backwards — a ``version regression`` failure if it does. At test stop the
summary (evaluations, versions seen, version changes seen, regressions — which must be 0) is printed and
written as JSON to ``FLAGYARD_LOADTEST_SUMMARY_FILE`` if set.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from locust import events
from locust.env import Environment

# Import the modules, not the classes: locust runs every User class it finds in this module.
from loadtests import locustfile_admin, locustfile_grpc
from loadtests.settings import settings


class MixedAdminUser(locustfile_admin.AdminUser):
    fixed_count = settings().mixed_admin_users


class MixedEvaluationUser(locustfile_grpc.EvaluationUser):
    weight = 1


@events.test_stop.add_listener  # type: ignore[untyped-decorator]
def write_summary(environment: Environment, **_kwargs: Any) -> None:
    summary = locustfile_grpc.TRACKER.summary()
    brief = {k: v for k, v in summary.items() if k not in ("highest_versions", "regression_examples")}
    print(f"mixed scenario: {json.dumps(brief)}", file=sys.stderr)
    for example in summary["regression_examples"]:
        print(f"mixed scenario: regression: {example}", file=sys.stderr)
    path = settings().summary_file
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(summary, indent=2) + "\n")
