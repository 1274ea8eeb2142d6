"""The RQ job contract between the control plane's outbox and the syncer.

The control plane enqueues jobs by the function's dotted path, so it never imports the syncer; the syncer
defines that function. What a job carries is written down in ``flagyard.control_plane.outbox``.
"""

from __future__ import annotations

SYNC_JOB_FUNCTION = "flagyard.syncer.jobs.sync_changes"
"""The function every sync job calls, with kwargs ``{"changes": [...]}``."""
