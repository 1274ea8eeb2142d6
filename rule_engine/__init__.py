"""Flagyard's rule engine: the flag model, its validation, compilation and evaluation.

Pure: no I/O and nothing else of Flagyard. The control plane validates with it, the syncer compiles
with it, the data plane and the SDK evaluate with it.
"""

# The folder is the source layout; under a second name every module would be loaded a second time.
if not __name__.startswith("flagyard."):
    raise ImportError(f"import this package as 'flagyard.{__name__}', not '{__name__}'")

from .compiler import CompiledFlag, CompiledSegment, compile_flag, compile_segment
from .documents import detect_format, load_flagset, parse_json
from .exceptions import DefinitionError, DocumentFormatError, Issue, PatternError, RuleEngineError
from .explain import Explanation, explain
from .flagd import export_flagd, load_flagd, validate_flagd
from .flagset import FlagSet
from .model import Clause, Document, Flag, Operator, Prerequisite, Rule, Segment, SegmentRule, Split
from .result import ErrorCode, EvaluationResult, FlagType, Reason
from .validation import validate_document, validate_flag, validate_segment

__all__ = [
    "Clause",
    "CompiledFlag",
    "CompiledSegment",
    "DefinitionError",
    "Document",
    "DocumentFormatError",
    "ErrorCode",
    "EvaluationResult",
    "Explanation",
    "Flag",
    "FlagSet",
    "FlagType",
    "Issue",
    "Operator",
    "PatternError",
    "Prerequisite",
    "Reason",
    "Rule",
    "RuleEngineError",
    "Segment",
    "SegmentRule",
    "Split",
    "compile_flag",
    "compile_segment",
    "detect_format",
    "explain",
    "export_flagd",
    "load_flagd",
    "load_flagset",
    "parse_json",
    "validate_document",
    "validate_flag",
    "validate_flagd",
    "validate_segment",
]
