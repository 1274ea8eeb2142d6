"""``flagyard eval``: evaluate flags from a local file (native or flagd format), no server needed."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

from flagyard.rule_engine import (
    DocumentFormatError,
    ErrorCode,
    EvaluationResult,
    FlagSet,
    FlagType,
    Reason,
    RuleEngineError,
    load_flagset,
)


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


def _parse_default(text: str, flag_type: FlagType) -> Any:
    if flag_type is FlagType.STRING:
        return text
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        raise typer.BadParameter(f"{text!r} is not valid JSON for type {flag_type}") from None


def _dump(payload: dict[str, Any]) -> None:
    sys.stdout.buffer.write(orjson.dumps(payload) + b"\n")


def eval_command(
    file: Annotated[
        Path,
        typer.Option("--file", "-f", help="Flags file, native or flagd JSON.", exists=True, dir_okay=False),
    ],
    flag: Annotated[str | None, typer.Option("--flag", help="Key of the flag to evaluate.")] = None,
    flag_type: Annotated[
        FlagType, typer.Option("--type", help="Type the caller expects.")
    ] = FlagType.BOOLEAN,
    default: Annotated[
        str | None, typer.Option("--default", help="Default value (JSON; raw text for strings).")
    ] = None,
    context: Annotated[str, typer.Option("--context", help="Evaluation context as a JSON object.")] = "{}",
    batch: Annotated[
        bool, typer.Option("--batch", help="Read JSON-line requests on stdin; write one result line each.")
    ] = False,
) -> None:
    """Evaluate flags against a local file, without any server."""
    try:
        flagset = load_flagset(file.read_bytes())
    except RuleEngineError as exc:
        issues = getattr(exc, "issues", None)
        where = f" (at {exc.path})" if isinstance(exc, DocumentFormatError) and exc.path else ""
        typer.echo(f"flagyard eval: {file}: {exc if not issues else 'invalid flags file'}{where}", err=True)
        for issue in issues or ():
            typer.echo(f"  {issue}", err=True)
        raise typer.Exit(2) from exc
    if batch:
        for line in sys.stdin.buffer:
            if line.strip():
                _dump(evaluate_line(flagset, line))
        return
    if flag is None or default is None:
        raise typer.BadParameter("--flag and --default are required unless --batch is given")
    request = {"flag": flag, "type": flag_type.value, "default": _parse_default(default, flag_type)}
    try:
        request["context"] = orjson.loads(context)
    except orjson.JSONDecodeError:
        raise typer.BadParameter(f"--context is not valid JSON: {context!r}") from None
    _dump(evaluate_line(flagset, orjson.dumps(request)))
