"""A real HTTP server on 127.0.0.1 (port 0) for the download tests (engine and editor).

Routes can honour or ignore Range, drop the connection after N bytes, stall, drip their body
slowly, lie about Content-Length, redirect, or answer with an error status or an HTML page; the
server logs every request's path and Range header and counts the body bytes it sent.
"""
from __future__ import annotations

import hashlib
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
from safetensors.numpy import save

PAYLOAD = save({"weight": np.arange(80_000, dtype=np.float32).reshape(400, 200),
                "bias": np.ones(16, dtype=np.float16)}, metadata={"note": "download test"})
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()
HTML = b"<!DOCTYPE html><html><head><title>Sign in</title></head><body>Please log in</body></html>\n"


@dataclass
class Route:
    body: bytes = PAYLOAD
    status: int = 200
    headers: dict = field(default_factory=dict)
    ranges: bool = True  # honour Range requests
    drop_after: int | None = None  # close the connection after this many body bytes…
    drops: int = 1  # …on this many requests
    stall: threading.Event | None = None  # after drop_after bytes, wait for this before closing
    claim_length: int | None = None  # a Content-Length to announce instead of the true one
    location: str | None = None  # answer 302 to here
    delay_s: float = 0.0  # pause before each 16 KiB chunk of the body (a slow server)


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep the test output clean
        pass

    def do_GET(self) -> None:  # http.server's name
        server = self.server
        path = self.path.split("?")[0]
        server.log.append({"path": path, "range": self.headers.get("Range")})
        route = server.routes.get(path)
        if route is None:
            return self._plain(404, b"not found")
        if route.location is not None:
            self.send_response(302)
            self.send_header("Location", route.location)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if route.status != 200:
            return self._plain(route.status, b"server says no")
        body, start = route.body, 0
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        if match and route.ranges:
            start = int(match[1])
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        rest = body[start:]
        self.send_header("Content-Length", str(route.claim_length if route.claim_length is not None else len(rest)))
        for key, value in route.headers.items():
            self.send_header(key, value)
        self.end_headers()
        if route.drop_after is not None and route.drops > 0:
            route.drops -= 1
            rest = rest[:max(route.drop_after - start, 0)]
            self._send(rest, route.delay_s)
            if route.stall is not None:
                route.stall.wait(20)
            return  # HTTP/1.0: returning closes the connection, mid-body
        self._send(rest, route.delay_s)

    def _send(self, data: bytes, delay_s: float = 0.0) -> None:
        try:
            for i in range(0, len(data), 16384):
                if delay_s:
                    time.sleep(delay_s)
                self.wfile.write(data[i:i + 16384])
                self.wfile.flush()
                self.server.sent += len(data[i:i + 16384])
        except OSError:  # the client hung up (a cancelled download): expected
            pass

    def _plain(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:  # a client that hangs up is expected here
        pass


@contextmanager
def serve(monkeypatch) -> Iterator[_Server]:
    """`server.routes[path] = Route(...)`, `server.base` ("http://127.0.0.1:PORT"), `server.log`,
    `server.sent`; proxies from the environment are switched off for the test."""
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    httpd = _Server(("127.0.0.1", 0), _Handler)
    httpd.routes, httpd.log, httpd.sent = {}, [], 0
    httpd.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield httpd
    finally:
        for route in httpd.routes.values():
            if route.stall is not None:
                route.stall.set()
        httpd.shutdown()
        httpd.server_close()
