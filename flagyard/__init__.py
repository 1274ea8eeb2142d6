"""Flagyard: feature flags and dynamic configuration.

``import flagyard`` is the SDK's public face::

    from flagyard import FlagyardClient
    client = FlagyardClient(target="localhost:50051", sdk_key="…", mode="local")  # or "remote"
    client = FlagyardClient.offline("flags.json")
    client.boolean("new-checkout", False, {"targeting_key": "u-1", "country": "DE"})

The planes live in ``flagyard.rule_engine``, ``flagyard.control_plane``, ``flagyard.syncer``,
``flagyard.data_plane`` and ``flagyard.sdk``.
"""

from flagyard import sdk
from flagyard.sdk import *  # noqa: F403 - the SDK's curated __all__ is this package's public face

__version__ = "0.1.0"

__all__ = ["__version__"]
__all__ += sdk.__all__
