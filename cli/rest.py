"""A small client of the control plane's admin REST API (``/api/v1``) over httpx."""

from __future__ import annotations

import uuid
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx

from .exceptions import ApiError, CliError, InputError, StaleWriteError, UnreachableError

DEFAULT_URL = "http://127.0.0.1:8000"
API_PREFIX = "/api/v1"
PAGE_SIZE = 200


def path(*segments: str | int) -> str:
    """An API path from percent-encoded segments: ``path("projects", "shop")`` is ``/projects/shop``."""
    return "".join("/" + quote(str(segment), safe="") for segment in segments)


def _api_error(method: str, response: httpx.Response) -> ApiError:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and "code" in body:
        code, message = str(body["code"]), str(body.get("message", ""))
        details = [
            (str(d.get("path", "")), str(d.get("message", "")))
            for d in body.get("details") or []
            if isinstance(d, dict)
        ]
    else:
        code, message, details = "", response.text.strip()[:200] or response.reason_phrase, []
    error = StaleWriteError if response.status_code == 412 else ApiError
    return error(method, str(response.request.url), response.status_code, code, message, details)


class Rest:
    """The admin API at ``url``, called with one API key; every failure leaves as a :class:`CliError`.

    POSTs carry a fresh ``Idempotency-Key`` and are retried once when the connection breaks before the
    answer arrives; PATCH and DELETE send the ``If-Match`` of a GET made just before (:meth:`update`,
    :meth:`remove`).
    """

    def __init__(self, url: str, api_key: str | None, *, timeout: float = 30.0) -> None:
        if not url.startswith(("http://", "https://")):
            raise InputError(f"--url / FLAGYARD_URL must be an http:// or https:// URL, not {url!r}")
        self.url = url.rstrip("/")
        self.timeout = timeout
        headers = {"User-Agent": "flagyard-cli", "Accept": "application/json"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self._http = httpx.Client(base_url=self.url + API_PREFIX, headers=headers, timeout=timeout)

    def __repr__(self) -> str:
        return f"Rest(url={self.url!r})"

    def __enter__(self) -> Rest:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._http.close()

    def request(
        self,
        method: str,
        api_path: str,
        *,
        body: Any = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        """Send one request; an error status raises :class:`ApiError` (412: :class:`StaleWriteError`)."""
        headers = dict(headers or {})
        attempts = 1
        if method == "POST":
            headers["Idempotency-Key"] = uuid.uuid4().hex
            attempts = 2
        query = {k: v for k, v in (params or {}).items() if v is not None}
        where = f"{method} {self.url}{API_PREFIX}{api_path}"
        for attempt in range(1, attempts + 1):
            try:
                response = self._http.request(
                    method, api_path, json=body, params=query or None, headers=headers
                )
                break
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                raise UnreachableError(self.url, str(exc) or type(exc).__name__) from exc
            except (httpx.ReadError, httpx.RemoteProtocolError) as exc:
                if attempt == attempts:
                    raise CliError(f"{where}: the connection broke before the answer ({exc})") from exc
            except httpx.TimeoutException as exc:
                raise CliError(f"{where}: no answer within {self.timeout:g} s") from exc
            except httpx.HTTPError as exc:
                raise CliError(f"{where}: {exc}") from exc
        if response.is_error:
            raise _api_error(method, response)
        return response

    def get(self, api_path: str, **params: Any) -> Any:
        return self.request("GET", api_path, params=params).json()

    def post(self, api_path: str, body: Any = None, **params: Any) -> Any:
        response = self.request("POST", api_path, body=body, params=params)
        return response.json() if response.content else None

    def etag(self, api_path: str) -> str:
        """The resource's current ETag (for ``If-Match``)."""
        response = self.request("GET", api_path)
        tag: str | None = response.headers.get("ETag")
        if not tag:
            raise CliError(f"GET {self.url}{API_PREFIX}{api_path} answered without an ETag")
        return tag

    def update(self, api_path: str, body: Any) -> Any:
        """PATCH the resource as of its current ETag."""
        headers = {"If-Match": self.etag(api_path)}
        return self.request("PATCH", api_path, body=body, headers=headers).json()

    def remove(self, api_path: str, *, if_match: bool = True) -> None:
        """DELETE the resource (as of its current ETag unless ``if_match`` is false)."""
        headers = {"If-Match": self.etag(api_path)} if if_match else {}
        self.request("DELETE", api_path, headers=headers)

    def pages(self, api_path: str, **params: Any) -> list[Any]:
        """Every item of a paginated list, following ``next_cursor``."""
        items: list[Any] = []
        cursor = None
        while True:
            page = self.get(api_path, **params, limit=PAGE_SIZE, cursor=cursor)
            items += page["items"]
            cursor = page.get("next_cursor")
            if not cursor:
                return items
