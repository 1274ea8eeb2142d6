"""``flagyard eval`` with the standard library only: the base install (no ``[cli]`` extra) evaluates
flags files too, so this module imports no Typer, Rich or httpx. ``eval_cmd`` is its Typer front end;
:func:`main` is the argparse one that ``flagyard`` falls back to without the extra."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO, TextIO

import orjson

from flagyard.rule_engine import (
    DocumentFormatError,
    ErrorCode,
    EvaluationResult,
    FlagSet,
    FlagType,
    Issue,
    Reason,
    RuleEngineError,
    load_flagset,
)


class UsageError(ValueError):
    """The command line is wrong (exit 2); each front end reports it its own way."""


class RequestError(ValueError):
    """One evaluation request is malformed; reported as an error line, never a crash."""

    def __init__(self, code: ErrorCode, message: str, default: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.default = default


_TYPE_CHECKS: dict[FlagType, tuple[str, Any]] = {
    FlagType.BOOLEAN: ("a boolean", lambda v: type(v) is bool),
    FlagType.STRING: ("a string", lambda v: type(v) is str),
    FlagType.INTEGER: ("an integer", lambda v: type(v) is int),
    FlagType.FLOAT: ("a number", lambda v: type(v) in (int, float)),
    FlagType.OBJECT: ("a JSON object or array", lambda v: type(v) in (dict, list)),
}


def check_request(request: Any) -> tuple[str, FlagType, Any, dict[str, Any]]:
    """Validate one batch request ``{"flag", "type", "default", "context"}``."""
    if not isinstance(request, dict):
        raise RequestError(ErrorCode.PARSE_ERROR, "a request is a JSON object")
    default = request.get("default")
    unknown = set(request) - {"flag", "type", "default", "context"}
    if unknown:
        raise RequestError(ErrorCode.GENERAL, f"unknown fields: {sorted(unknown)}", default)
    flag = request.get("flag")
    if not isinstance(flag, str) or not flag:
        raise RequestError(ErrorCode.GENERAL, "'flag' must be a non-empty string", default)
    try:
        flag_type = FlagType(str(request.get("type")))
    except ValueError:
        allowed = "|".join(t.value for t in FlagType)
        raise RequestError(ErrorCode.GENERAL, f"'type' must be one of {allowed}", default) from None
    if "default" not in request:
        raise RequestError(ErrorCode.GENERAL, "'default' is required", None)
    what, check = _TYPE_CHECKS[flag_type]
    if not check(default):
        raise RequestError(ErrorCode.TYPE_MISMATCH, f"'default' must be {what} for type {flag_type}", default)
    if flag_type is FlagType.FLOAT:
        default = float(default)  # type: ignore[arg-type]
    context = request.get("context", {})
    if not isinstance(context, dict):
        raise RequestError(ErrorCode.INVALID_CONTEXT, "'context' must be a JSON object", default)
    return flag, flag_type, default, context


def result_line(result: EvaluationResult) -> dict[str, Any]:
    return {
        "value": result.value,
        "variant": result.variant,
        "reason": str(result.reason),
        "error_code": None if result.error_code is None else str(result.error_code),
        "error_message": result.error_message,
        "flag_metadata": dict(result.flag_metadata),
    }


def error_line(error: RequestError) -> dict[str, Any]:
    return {
        "value": error.default,
        "variant": None,
        "reason": str(Reason.ERROR),
        "error_code": str(error.code),
        "error_message": str(error),
        "flag_metadata": {},
    }


def evaluate_line(flagset: FlagSet, line: str | bytes) -> dict[str, Any]:
    """Evaluate one JSON line; a malformed line yields an error line, never an exception."""
    try:
        request = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        return error_line(RequestError(ErrorCode.PARSE_ERROR, f"not valid JSON: {exc}"))
    try:
        flag, flag_type, default, context = check_request(request)
    except RequestError as error:
        return error_line(error)
    return result_line(flagset.evaluate(flag, default, context, flag_type))


def parse_default(text: str, flag_type: FlagType) -> Any:
    if flag_type is FlagType.STRING:
        return text
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        raise UsageError(f"--default: {text!r} is not valid JSON for type {flag_type}") from None


def load_file(file: Path, err: TextIO) -> FlagSet | None:
    """The file's flag set; ``None`` after writing why it cannot be loaded (every issue, with pointers).

    A flagd file loads as flagd loads it: a broken flag answers PARSE_ERROR and the others serve; each
    problem is written to ``err`` as a warning with its pointer."""
    warnings: list[Issue] = []
    try:
        flagset = load_flagset(file.read_bytes(), warnings=warnings)
    except OSError as exc:
        err.write(f"flagyard eval: {file}: {exc.strerror or exc}\n")
    except RuleEngineError as exc:
        issues = getattr(exc, "issues", None)
        where = f" (at {exc.path})" if isinstance(exc, DocumentFormatError) and exc.path else ""
        err.write(f"flagyard eval: {file}: {exc if not issues else 'invalid flags file'}{where}\n")
        for issue in issues or ():
            err.write(f"  {issue}\n")
        return None
    for warning in warnings:
        err.write(f"flagyard eval: {file}: warning: {warning}\n")
    return flagset


def run(
    flagset: FlagSet,
    *,
    flag: str | None,
    flag_type: FlagType,
    default: str | None,
    context: str,
    batch: bool,
    stdin: BinaryIO,
    stdout: BinaryIO,
) -> None:
    """Evaluate one flag, or every JSON-line request on ``stdin``; one result line each on ``stdout``."""
    if batch:
        for line in stdin:
            if line.strip():
                stdout.write(orjson.dumps(evaluate_line(flagset, line)) + b"\n")
        return
    if flag is None or default is None:
        raise UsageError("--flag and --default are required unless --batch is given")
    request = {"flag": flag, "type": flag_type.value, "default": parse_default(default, flag_type)}
    try:
        request["context"] = orjson.loads(context)
    except orjson.JSONDecodeError:
        raise UsageError(f"--context is not valid JSON: {context!r}") from None
    stdout.write(orjson.dumps(evaluate_line(flagset, orjson.dumps(request))) + b"\n")


def main(argv: Sequence[str]) -> int:
    """``flagyard eval`` for the base install (argparse); the same options and output as the Typer one."""
    parser = argparse.ArgumentParser(
        prog="flagyard eval", description="Evaluate flags against a local file, without any server."
    )
    parser.add_argument("--file", "-f", required=True, type=Path, help="Flags file, native or flagd JSON.")
    parser.add_argument("--flag", help="Key of the flag to evaluate.")
    parser.add_argument(
        "--type", dest="flag_type", default=FlagType.BOOLEAN.value, choices=[t.value for t in FlagType]
    )
    parser.add_argument("--default", help="Default value (JSON; raw text for strings).")
    parser.add_argument("--context", default="{}", help="Evaluation context as a JSON object.")
    parser.add_argument(
        "--batch", action="store_true", help="Read JSON-line requests on stdin; write one result line each."
    )
    args = parser.parse_args(list(argv))
    flagset = load_file(args.file, sys.stderr)
    if flagset is None:
        return 2
    try:
        run(
            flagset,
            flag=args.flag,
            flag_type=FlagType(args.flag_type),
            default=args.default,
            context=args.context,
            batch=args.batch,
            stdin=sys.stdin.buffer,
            stdout=sys.stdout.buffer,
        )
    except UsageError as exc:
        parser.error(str(exc))
    return 0
