"""The admin REST user: what people and tools do to the control plane, in realistic proportions.

Reads 70 % (get a flag 30, list flags 20, get an environment configuration 20), rule changes with
``If-Match`` 15 %, toggles 10 %, rollbacks 5 %. A user remembers the ETag of every flag it has read or
written and sends it as ``If-Match`` — like an admin UI showing a page loaded earlier — so a change made by
someone else in between answers 412: that response is counted under its own name (``[412 stale ETag]``,
not a failure), then the user reads the configuration again (``[re-read after 412]``) and retries
(``[retry after 412]``), at most three times. A rollback restores one of the last five versions; when
that state is the current one the API answers 409, counted as ``[409 same state]`` (not a failure).

Run alone: ``locust -f loadtests/locustfile_admin.py --host http://127.0.0.1:8000`` with
``FLAGYARD_LOADTEST_ADMIN_KEY`` set (see loadtests/settings.py); ``python -m loadtests.run`` does it all.
"""

from __future__ import annotations

import random
from typing import Any

from locust import FastHttpUser, task
from locust.env import Environment
from locust.exception import StopUser

from loadtests import common as c
from loadtests import final_stats
from loadtests.settings import settings

API = "/api/v1"
PATCH_ATTEMPTS = 4
"""The first PATCH and up to three retries after a 412."""
ROLLBACK_DEPTH = 5

final_stats.register()


class AdminUser(FastHttpUser):
    def __init__(self, environment: Environment) -> None:
        cfg = settings()
        self.default_headers = {"Authorization": f"Bearer {cfg.admin_key.get_secret_value()}"}
        self.network_timeout = self.connection_timeout = cfg.http_timeout_seconds
        super().__init__(environment)
        self.cfg = cfg
        self.rng = random.Random()  # noqa: S311 - load, not secrets
        self.flags: list[str] = list(cfg.flags)
        self.base = f"{API}/projects/{cfg.project}/flags"
        self.etags: dict[str, str] = {}
        self.versions: dict[str, int] = {}
        self.enabled: dict[str, bool] = {}

    def wait_time(self) -> float:
        return self.rng.uniform(0, self.cfg.admin_wait_seconds)

    def on_start(self) -> None:
        if not self.flags:
            self.flags = self._discover()
        if not self.flags:
            raise StopUser(f"project {self.cfg.project!r} has no flags to work on")

    def _discover(self) -> list[str]:
        keys: list[str] = []
        cursor: str | None = None
        while True:
            params = {"limit": "200", **({"cursor": cursor} if cursor else {})}
            resp = self.client.get(self.base, params=params, name=c.LIST_FLAGS)
            if resp.status_code != 200:
                return keys
            page = resp.json()
            keys += [item["key"] for item in page["items"]]
            cursor = page.get("next_cursor")
            if not cursor:
                return keys

    # --- what a response tells about a flag ---------------------------------------------------------

    def _remember(self, flag: str, resp: Any) -> None:
        etag = resp.headers.get("etag") if resp.headers else None
        body = resp.json()
        version = body.get("version")
        if etag is None and version is not None:
            etag = f'"{version}"'
        if etag is not None:
            self.etags[flag] = etag
        if isinstance(version, int):
            self.versions[flag] = version
        enabled = body.get("enabled")
        if enabled is None:
            enabled = body.get("environments", {}).get(self.cfg.environment, {}).get("enabled")
        if isinstance(enabled, bool):
            self.enabled[flag] = enabled

    def _env_url(self, flag: str) -> str:
        return f"{self.base}/{flag}/environments/{self.cfg.environment}"

    def _read_env_config(self, flag: str, name: str) -> bool:
        resp = self.client.get(self._env_url(flag), name=name)
        if resp.status_code != 200:
            return False
        self._remember(flag, resp)
        return True

    # --- reads: 70 % --------------------------------------------------------------------------------

    @task(30)
    def get_flag(self) -> None:
        flag = self.rng.choice(self.flags)
        resp = self.client.get(f"{self.base}/{flag}", name=c.GET_FLAG)
        if resp.status_code == 200:
            self._remember(flag, resp)

    @task(20)
    def list_flags(self) -> None:
        params = {"limit": "50"}
        if self.rng.random() < 0.3:
            params["q"] = self.rng.choice(("lt-", "bool", "string", "-01", "checkout"))
        self.client.get(self.base, params=params, name=c.LIST_FLAGS)

    @task(20)
    def get_env_config(self) -> None:
        self._read_env_config(self.rng.choice(self.flags), c.GET_ENV_CONFIG)

    # --- writes: 30 % -------------------------------------------------------------------------------

    @task(15)
    def patch_rules(self) -> None:
        flag = self.rng.choice(self.flags)
        if flag not in self.etags and not self._read_env_config(flag, c.GET_ENV_CONFIG):
            return
        body = {
            "rules": c.random_rules(self.rng),
            "default_variant": self.rng.choice("ab"),
            "comment": "load test: new rules",
        }
        name = c.PATCH_ENV_CONFIG
        for attempt in range(PATCH_ATTEMPTS):
            with self.client.patch(
                self._env_url(flag),
                json=body,
                headers={"If-Match": self.etags[flag]},
                name=name,
                catch_response=True,
            ) as resp:
                if resp.status_code == 200:
                    self._remember(flag, resp)
                    return
                if resp.status_code != 412:
                    return  # reported as a failure by locust
                if attempt == PATCH_ATTEMPTS - 1:
                    resp.failure(f"still 412 after {attempt} re-reads")
                    return
                resp.request_meta["name"] = c.PATCH_STALE  # expected under concurrency: its own name
                resp.success()
            if not self._read_env_config(flag, c.REREAD_AFTER_412):
                return
            name = c.PATCH_RETRY

    @task(10)
    def toggle(self) -> None:
        flag = self.rng.choice(self.flags)
        enabled = not self.enabled.get(flag, self.rng.random() < 0.5)
        resp = self.client.post(
            f"{self._env_url(flag)}/toggle",
            json={"enabled": enabled, "comment": "load test: toggle"},
            name=c.TOGGLE,
        )
        if resp.status_code == 200:
            self._remember(flag, resp)

    @task(5)
    def rollback(self) -> None:
        flag = self.rng.choice(self.flags)
        if flag not in self.versions:
            resp = self.client.get(f"{self.base}/{flag}", name=c.GET_FLAG)
            if resp.status_code != 200:
                return
            self._remember(flag, resp)
        current = self.versions[flag]
        target = self.rng.randint(max(1, current - ROLLBACK_DEPTH), max(1, current - 1))
        with self.client.post(
            f"{self.base}/{flag}/rollback",
            json={"version": target, "comment": "load test: rollback"},
            name=c.ROLLBACK,
            catch_response=True,
        ) as resp:
            if resp.status_code == 200:
                self._remember(flag, resp)
            elif resp.status_code == 409 and "nothing to roll back" in resp.text:
                resp.request_meta["name"] = c.ROLLBACK_NOOP  # that version is the current state
                resp.success()
