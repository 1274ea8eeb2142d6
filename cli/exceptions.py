"""Errors of the command line, reported on stderr with their exit code, never with a traceback::

CliError                 exit 1
├── InputError           exit 2   a bad file or argument, found before any request
├── UnreachableError     exit 3   no control plane answers at the URL
├── PreflightError       exit 1   `flagyard up`: what is missing before anything starts
└── ApiError             exit 1   the API answered with an error body {code, message, details[]}
    └── StaleWriteError           412: someone else changed the resource since it was read
"""

from __future__ import annotations

from collections.abc import Sequence


class CliError(Exception):
    """An expected failure of a command: its message is the whole report."""

    exit_code = 1


class InputError(CliError):
    exit_code = 2


class UnreachableError(CliError):
    exit_code = 3

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(
            f"the control plane is not reachable at {url} ({reason}); start it with `flagyard up` "
            "(`./scripts/run` in a clone), or point --url / FLAGYARD_URL at a running one"
        )
        self.url = url


class ApiError(CliError):
    """The API refused a request; the message names the request, the status and every detail pointer."""

    def __init__(
        self,
        method: str,
        url: str,
        status: int,
        code: str,
        message: str,
        details: Sequence[tuple[str, str]] = (),
    ) -> None:
        self.method, self.url, self.status, self.code = method, url, status, code
        self.api_message = message
        self.details = list(details)
        super().__init__(self._line())

    def _line(self) -> str:
        line = " ".join(filter(None, (self.method, self.url, "→", str(self.status), self.code)))
        if self.api_message:
            line += f": {self.api_message}"
        if self.details:
            line += " (" + "; ".join(f"{path or '/'}: {message}" for path, message in self.details) + ")"
        if self.status == 401:
            line += "; check --api-key / FLAGYARD_API_KEY"
        return line


class StaleWriteError(ApiError):
    def _line(self) -> str:
        return (
            "someone else changed it since it was read; nothing was applied, run the command again "
            f"({super()._line()})"
        )


class PreflightError(CliError):
    """``flagyard up``: what is missing before anything starts (PostgreSQL, Redis, a port), each reported."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))
