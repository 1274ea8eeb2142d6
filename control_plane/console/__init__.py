"""The web console: a small single-page app under ``/ui``, served from this package's ``static`` directory.

It is plain ES modules with no build step: nothing to compile, nothing to rebuild, and every asset ships
inside the Python package (no CDN, works offline). The console talks only to the public admin API
(``/api/v1``) on the same origin, so it can do nothing the API cannot.

Every ``/ui`` response carries the console's security headers: a CSP that allows scripts, styles and
fetches from this origin only (no inline script or style, so an injected string cannot run), no framing,
no referrer and no MIME sniffing.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse, PlainTextResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

STATIC_DIR = Path(__file__).parent / "static"
PREFIX = "/ui"

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS: dict[str, str] = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    # Assets revalidate on every load (a cheap 304), so an upgraded server never runs a stale module.
    "Cache-Control": "no-cache",
}
_RAW_HEADERS = [
    (name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in SECURITY_HEADERS.items()
]
_REPLACED = {name for name, _ in _RAW_HEADERS}


def _with_security_headers(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    return [*(h for h in headers if h[0].lower() not in _REPLACED), *_RAW_HEADERS]


class ConsoleFiles(StaticFiles):
    """The console's static files, every answer (404s included) with the security headers."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        # StaticFiles raises its 404 and 405 for the app's error handlers, which answer outside this mount
        # (without the headers); answered here, they pass through ``__call__`` below.
        try:
            return await super().get_response(path, scope)
        except HTTPException as exc:
            return PlainTextResponse(exc.detail, status_code=exc.status_code, headers=exc.headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = _with_security_headers(list(message.get("headers", [])))
            await send(message)

        await super().__call__(scope, receive, send_with_headers)


def _secured(response: Response) -> Response:
    response.headers.update(SECURITY_HEADERS)
    return response


def install_console(app: FastAPI) -> None:
    """Serve the console: ``/ui`` redirects to ``/ui/`` (so the page's relative asset URLs resolve under
    ``/ui/``), ``/ui/`` is ``index.html``, ``/ui/static/…`` the files."""
    app.mount(f"{PREFIX}/static", ConsoleFiles(directory=STATIC_DIR), name="console-static")

    @app.get(PREFIX, include_in_schema=False)
    async def console_redirect(request: Request) -> Response:
        root = request.scope.get("root_path", "").rstrip("/")
        return _secured(RedirectResponse(f"{root}{PREFIX}/", status_code=307))

    @app.get(f"{PREFIX}/", include_in_schema=False)
    async def console_index() -> Response:
        return _secured(FileResponse(STATIC_DIR / "index.html", media_type="text/html; charset=utf-8"))
