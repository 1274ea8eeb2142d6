"""Errors of the SDK.

Evaluation never raises: every failure becomes the caller's default with reason ERROR and an
OpenFeature error code. These are raised only by constructors given unusable arguments::

    FlagyardError
    ├── ConfigurationError    the client or provider was set up with invalid arguments
    └── ResyncError           internal: a streamed message cannot be applied, the local mode asks for a
                              snapshot (never reaches the app)
"""

from __future__ import annotations


class FlagyardError(Exception):
    """Base of every error the SDK raises."""


class ConfigurationError(FlagyardError):
    """The client or provider cannot work with the arguments it was given."""


class ResyncError(FlagyardError):
    """The sync stream said something the held state cannot apply: start over from a snapshot."""
