"""A real HTTP receiver for the webhook tests: a threaded server on 127.0.0.1 whose paths behave as named.

``/ok`` answers 200; ``/fail/<n>`` answers 500 to its first ``n`` requests, then 200; ``/status/<code>``
always answers that code; ``/hang`` holds the request until :attr:`Receiver.release` is set (or 30 s);
``/markup`` answers 200 with :data:`MARKUP` (an
excerpt that would run script if a page rendered it as HTML); ``/huge`` answers 200 with an endless body; ``/drip`` answers 200 and
then a byte every 0.3 s for a minute; ``/redirect`` answers 302 to ``/ok``. Every request is recorded
(path, headers, body) as it arrives.
"""

from __future__ import annotations

import contextlib
import threading
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MARKUP = b"<img src=x onerror=window.__pwned=1>"


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    server: ThreadingHTTPServer
    requests: list[Received] = field(default_factory=list)
    hits: Counter[str] = field(default_factory=Counter)
    release: threading.Event = field(default_factory=threading.Event)
    hanging: threading.Event = field(default_factory=threading.Event)
    huge_bytes_sent: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def received(self, path: str) -> list[Received]:
        with self.lock:
            return [r for r in self.requests if r.path == path]

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def start_receiver() -> Receiver:
    receiver: Receiver

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length)
            with receiver.lock:
                receiver.requests.append(
                    Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                )
                receiver.hits[self.path] += 1
                hit = receiver.hits[self.path]
            if self.path == "/ok":
                self._answer(200, b"thanks")
            elif self.path == "/markup":
                self._answer(200, MARKUP)
            elif self.path.startswith("/fail/"):
                self._answer(500 if hit <= int(self.path.rsplit("/", 1)[1]) else 200, b"status by count")
            elif self.path.startswith("/status/"):
                self._answer(int(self.path.rsplit("/", 1)[1]), b"as asked")
            elif self.path == "/hang":
                receiver.hanging.set()
                receiver.release.wait(30)
                self._answer(200, b"too late")
            elif self.path == "/huge":
                self.send_response(200)
                self.send_header("content-type", "text/plain")
                self.end_headers()
                chunk = b"x" * 65536
                try:
                    for _ in range(1024):  # 64 MiB unless the client stops reading
                        self.wfile.write(chunk)
                        receiver.huge_bytes_sent += len(chunk)
                except OSError:
                    pass
            elif self.path == "/drip":
                self.send_response(200)
                self.send_header("content-type", "text/plain")
                self.end_headers()
                with contextlib.suppress(OSError):
                    for _ in range(200):  # a byte every 0.3 s: no single read ever waits long
                        self.wfile.write(b".")
                        self.wfile.flush()
                        if receiver.release.wait(0.3):
                            break
            elif self.path == "/redirect":
                self.send_response(302)
                self.send_header("location", receiver.url("/ok"))
                self.send_header("content-length", "0")
                self.end_headers()
            else:
                self._answer(404, b"no such path")

        def _answer(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("content-type", "text/plain")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            with contextlib.suppress(OSError):
                self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    receiver = Receiver(server)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return receiver
