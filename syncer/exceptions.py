"""Errors of the syncer::

SyncerError
├── ConfigurationError         the settings are invalid; the process does not start
├── InvalidDefinitionError     the committed definition fails validation; retrying cannot help
├── StoreUnavailableError      PostgreSQL or Redis could not be reached; the job is retried
└── ChangeFailedError          some changes of a job failed unexpectedly (the others were applied); retried
"""

from __future__ import annotations


class SyncerError(Exception):
    """Base of every error the syncer raises."""


class ConfigurationError(SyncerError):
    """The settings are invalid. The message names each setting and why, never a value (secrets)."""


class InvalidDefinitionError(SyncerError):
    """A committed flag or segment does not validate; it is not written to Redis."""


class StoreUnavailableError(SyncerError):
    """PostgreSQL or Redis failed; the job fails and RQ retries it with backoff."""


class ChangeFailedError(SyncerError):
    """Some changes of a job raised an unexpected error; the job's other changes were applied. The job fails,
    so RQ retries it and finally keeps it in the failed registry."""
