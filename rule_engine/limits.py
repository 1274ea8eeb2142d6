"""Bounds on everything a writer or an SDK-key holder can send, in one place every plane imports.

The control plane refuses what exceeds them at the edge (413 for a body, 422 with a JSON pointer for the
rest); validation enforces the per-definition ones, so a definition that passed once is known to fit
everywhere after it: the syncer can serialize it, Redis can hold it, a data plane can stream it inside
one gRPC message (snapshots are cut into chunks of :data:`SYNC_CHUNK_BYTES`), and an SDK can receive and
evaluate it. Sizes are of the compact UTF-8 JSON encoding. ARCHITECTURE.md ("Limits") lists them for
users; ``tests/test_docs.py`` keeps that table equal to these numbers.
"""

from __future__ import annotations

from typing import Final

KiB: Final = 1024
MiB: Final = 1024 * KiB

# Definitions (native flags and segments, and flagd files loaded through them).
MAX_VALUE_BYTES: Final = 64 * KiB
"""One variant value (or one clause operand, or one metadata value), encoded."""
MAX_VALUE_DEPTH: Final = 32
"""Nesting of arrays and objects inside one value: ``{"a": [1]}`` is depth 2."""
MAX_FLAG_BYTES: Final = 512 * KiB
"""One flag in one environment: definition, variants and that environment's rules."""
MAX_SEGMENT_BYTES: Final = 2 * MiB
"""One segment with its included and excluded key lists."""
MAX_VARIANTS: Final = 100
MAX_RULES: Final = 1_000
MAX_CLAUSES: Final = 100
"""Clauses per rule (per segment rule likewise)."""
MAX_CLAUSE_VALUES: Final = 10_000
MAX_PREREQUISITES: Final = 50
MAX_PREREQUISITE_DEPTH: Final = 64
"""Flags in one chain of prerequisites (a flag, its prerequisite, that one's, …). Evaluation answers
ERROR past it, so a chain never recurses deeper than this whatever a data plane holds."""
MAX_SEGMENT_RULES: Final = 1_000
MAX_SEGMENT_DEPTH: Final = 64
"""Segments in one chain of segments whose rules match other segments; evaluation answers ERROR past it."""
MAX_SEGMENT_TARGETS: Final = 50_000
"""Included (and, separately, excluded) targeting keys of one segment."""
MAX_METADATA_ENTRIES: Final = 64
MAX_WEIGHT_SUM: Final = 2**31 - 1
"""Split weights (relative, and flagd's ``fractional``) sum to at most this, so 32-bit SDKs never overflow."""
MAX_PATTERN_LENGTH: Final = 512
"""A ``matches`` pattern (RE2 syntax, matched in linear time)."""
MAX_PATTERN_PROGRAM_SIZE: Final = 2000
"""Instructions of a compiled ``matches`` pattern (RE2's program size). One match costs up to about this
many steps per byte of the attribute, so this keeps the worst match of a :data:`MAX_SUBJECT_LENGTH`
attribute to a few milliseconds; large counted repeats (``a{0,1000}``) and Unicode classes repeated
(``\\pL{1,200}``) exceed it."""
MAX_PATTERN_PROGRAM_TOTAL: Final = 4_000
"""Instructions of all ``matches`` patterns of one flag or segment together: one evaluation may try
them all, so this bounds its regex work (the worst case is about 5 ms per 1,000 instructions on a
:data:`MAX_SUBJECT_LENGTH` attribute) however many rules carry a pattern."""
MAX_PATTERN_MEMORY: Final = 256 * KiB
"""Memory RE2 may use for one compiled pattern (its program and lazily built DFA); also bounds what
compiles at all, so every plane accepts the same patterns."""
MAX_SUBJECT_LENGTH: Final = 1024
"""An attribute longer than this never ``matches`` a pattern."""
MAX_JSONLOGIC_DEPTH: Final = 128
"""Nesting of a JsonLogic ``targeting`` expression."""
MAX_JSONLOGIC_NODES: Final = 50_000
"""Operators, operands and array items of one flag's native ``targeting`` expression (its size in
bytes is bounded by ``MAX_FLAG_BYTES`` as well): what one evaluation walks at most outside loops."""
MAX_JSONLOGIC_LOOP_NESTING: Final = 1
"""``map``/``filter``/``reduce``/``all``/``some``/``none`` inside the rule of another one, in a native
``targeting`` expression: one level keeps an evaluation linear in the size of the context's arrays
(two would make it quadratic in what an SDK-key holder sends)."""
MAX_JSON_DEPTH: Final = 160
"""Nesting of any JSON document Flagyard parses or writes (a request body, a flags file, a Redis
value): above a targeting expression's depth plus its wrapping, below orjson's 255 and Python's
recursion limit, so nothing accepted fails to serialize later."""

# An environment.
MAX_FLAGS_PER_ENVIRONMENT: Final = 20_000
"""Flags of a project (each has a configuration in every environment)."""
MAX_SEGMENTS_PER_ENVIRONMENT: Final = 5_000

# Transport.
MAX_REQUEST_BODY_BYTES: Final = 4 * MiB
"""An admin REST request body (413 beyond)."""
MAX_IMPORT_BODY_BYTES: Final = 64 * MiB
"""The body of an environment import."""
SYNC_CHUNK_BYTES: Final = 1 * MiB
"""A snapshot message of ``SyncFlags`` carries flags up to this size, then one more at most."""
MAX_GRPC_MESSAGE_BYTES: Final = 4 * MiB
"""Every gRPC message either way: above ``SYNC_CHUNK_BYTES`` plus the largest flag or segment."""
MAX_CONTEXT_BYTES: Final = 256 * KiB
"""An evaluation context an SDK sends, measured as its encoded protobuf Struct (INVALID_ARGUMENT beyond)."""
MAX_BULK_KEYS: Final = 10_000
"""Flag keys named in one ``ResolveAll``."""

# Usage reports (ReportEvaluations).
MAX_REPORT_ENTRIES: Final = 5_000
"""Counts in one report."""
MAX_REPORTED_COUNT: Final = 10**9
"""One entry's count: more evaluations than one process can make in a report interval."""
MAX_USAGE_FIELDS: Final = 100_000
"""Distinct (flag, variant, reason) counters kept per environment; reports past it are dropped."""
REPORT_CLOCK_SKEW_SECONDS: Final = 300
"""A reported ``last_evaluated_at`` may lie this far in the future; later ones are clamped to now."""

# Context samples (impact preview): what data planes and SDKs keep of the contexts they evaluate.
MAX_SAMPLE_CONTEXTS: Final = 1_000
"""Distinct sampled contexts kept per environment (the most recently seen; older ones are evicted)."""
MAX_SAMPLE_ATTRIBUTES: Final = 32
"""Attributes one environment's sampling policy names (kept in clear and hashed together)."""
MAX_SAMPLE_VALUE_BYTES: Final = 256
"""One attribute value kept in a sample, encoded; a larger value is left out of the sample."""
SAMPLE_RATE_PER_SECOND: Final = 10
"""Contexts one process (a data plane, or an SDK in local mode) samples per environment per second."""
MAX_REPORT_CONTEXTS: Final = 50
"""Sampled contexts in one ``ReportEvaluations``."""
SAMPLE_TTL_SECONDS: Final = 7 * 24 * 3600
"""A sample not seen again for this long is gone (the whole set expires when nothing new arrives)."""
MAX_PREVIEW_CONTEXTS: Final = 10_000
"""Contexts a caller may supply to one impact preview."""
