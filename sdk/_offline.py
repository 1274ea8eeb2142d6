"""Offline mode: flags from a local file (native or flagd format), optionally reloaded on change."""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flagyard.rule_engine import (
    EvaluationResult,
    Explanation,
    FlagSet,
    FlagType,
    Issue,
    RuleEngineError,
    explain,
    load_flagset,
)

from ._resolver import Listener, changed_flags
from ._status import ProviderStatus, StatusMachine
from .exceptions import ConfigurationError

_log = logging.getLogger("flagyard")


class OfflineResolver:
    """Evaluates from a file. With ``watch``, a daemon thread polls the file and swaps in a new flag set
    when its content changes. An unreadable or invalid new version moves the status to ERROR while the last
    good one keeps serving; the next good version moves it back to READY."""

    def __init__(
        self, path: str | os.PathLike[str], *, watch: bool = False, poll_interval: float = 1.0
    ) -> None:
        self._path = Path(path)
        self.warnings: list[Issue] = []
        """The problems of the last file loaded (a flagd file's broken flags), with their pointers."""
        try:
            data = self._path.read_bytes()
            self._flagset = self._load(data)
        except OSError as exc:
            raise ConfigurationError(f"cannot read flags file {self._path}: {exc}") from exc
        except RuleEngineError as exc:
            raise ConfigurationError(f"invalid flags file {self._path}: {exc}") from exc
        self._digest = hashlib.sha256(data).digest()
        self._digest_valid = True
        """Whether the content last read (``_digest``) is the content served."""
        self._status = StatusMachine(ProviderStatus.READY)
        self._poll_interval = poll_interval
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self._watch = watch
        if watch:
            self._start_watcher()
            os.register_at_fork(after_in_child=self._after_fork)

    def _load(self, data: bytes) -> FlagSet:
        """The file's flags; a flagd file loads as flagd loads it (a broken flag answers PARSE_ERROR,
        the others serve) and each of its problems is logged as a warning with its pointer."""
        warnings: list[Issue] = []
        flagset = load_flagset(data, warnings=warnings)
        for warning in warnings:
            _log.warning("flags file %s: %s", self._path, warning)
        self.warnings = warnings
        return flagset

    @property
    def flagset(self) -> FlagSet:
        return self._flagset

    def resolve(
        self, key: str, default: Any, context: Mapping[str, Any], flag_type: FlagType
    ) -> EvaluationResult:
        return self._flagset.evaluate(key, default, context, flag_type)

    def resolve_all(self, context: Mapping[str, Any]) -> dict[str, EvaluationResult]:
        return self._flagset.evaluate_all(context)

    def explain(
        self, key: str, default: Any, context: Mapping[str, Any], flag_type: FlagType | None
    ) -> Explanation:
        """The evaluation of ``key`` with its trace, from the flags served now (a flagd-format file's
        flags explain with their result alone)."""
        return explain(self._flagset, key, context, default, flag_type)

    @property
    def status(self) -> ProviderStatus:
        return self._status.status

    def wait_ready(self, timeout: float) -> bool:
        return True

    def add_listener(self, listener: Listener) -> None:
        self._status.add_listener(listener)

    def reload(self) -> bool:
        """Re-read the file now; returns whether the flags changed. Invalid content keeps the old flags."""
        try:
            data = self._path.read_bytes()
        except OSError as exc:
            self._status.move(ProviderStatus.ERROR, f"cannot read {self._path}: {exc}")
            return False
        digest = hashlib.sha256(data).digest()
        if digest == self._digest:
            if self._digest_valid:  # readable again, and still the content served
                self._status.move(ProviderStatus.READY)
            return False
        try:
            flagset = self._load(data)
        except RuleEngineError as exc:
            self._digest, self._digest_valid = digest, False
            self._status.move(ProviderStatus.ERROR, f"invalid flags file {self._path}: {exc}")
            return False
        changed = changed_flags(self._flagset, flagset)
        self._digest, self._digest_valid = digest, True
        self._flagset = flagset
        self._status.move(ProviderStatus.READY)
        self._status.changed(changed)
        return True

    def close(self) -> None:
        self._stop.set()
        if self._watcher is not None and self._watcher is not threading.current_thread():
            self._watcher.join(timeout=5)

    def _start_watcher(self) -> None:
        self._stop = threading.Event()
        self._watcher = threading.Thread(target=self._watch_loop, name="flagyard-file-watch", daemon=True)
        self._watcher.start()

    def _watch_loop(self) -> None:
        while not self._stop.wait(self._poll_interval):
            self.reload()

    def _after_fork(self) -> None:
        self._status.reset_after_fork()
        if self._watch and not self._stop.is_set():
            self._start_watcher()
