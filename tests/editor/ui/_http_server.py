"""A real HTTP server on 127.0.0.1 (port 0) for the editor's download tests (no tests here).

A trimmed copy of the helper in tests/inference/test_download.py (tests packages do not import each
other): routes honour Range, and can drip their body slowly (`delay_s` per 16 KiB chunk) so a
test can cancel mid-download or watch the UI thread while bytes arrive. Every request's path and
Range header is logged, so a test can tell "refused before any request" and "resumed" apart.
"""
from __future__ import annotations

import hashlib
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from safetensors.numpy import save

# A real (small) safetensors file: the engine checks the downloaded bytes are a model.
PAYLOAD = save({"weight": np.arange(80_000, dtype=np.float32).reshape(400, 200),
                "bias": np.ones(16, dtype=np.float16)}, metadata={"note": "editor download test"})
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()
CHUNK = 16384


@dataclass
class Route:
    body: bytes = PAYLOAD
    ranges: bool = True  # honour `Range: bytes=N-`
    delay_s: float = 0.0  # pause before each CHUNK of the body (a slow server)


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep the test output clean
        pass

    def do_GET(self) -> None:  # http.server's name
        server = self.server
        path = self.path.split("?")[0]
        server.log.append({"path": path, "range": self.headers.get("Range")})
        route = server.routes.get(path)
        if route is None:
            body = b"not found"
            self.send_response(404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        body, start = route.body, 0
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        if match and route.ranges and int(match[1]) < len(body):
            start = int(match[1])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        rest = body[start:]
        self.send_header("Content-Length", str(len(rest)))
        self.end_headers()
        try:
            for i in range(0, len(rest), CHUNK):
                if route.delay_s:
                    time.sleep(route.delay_s)
                self.wfile.write(rest[i:i + CHUNK])
                self.wfile.flush()
        except OSError:  # the client hung up (a cancelled download): expected
            pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:  # a client that hangs up is expected here
        pass


@pytest.fixture
def http_server(monkeypatch) -> Iterator[_Server]:
    """`server.routes[path] = Route(...)`, `server.base` ("http://127.0.0.1:PORT"), `server.log`."""
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    httpd = _Server(("127.0.0.1", 0), _Handler)
    httpd.routes, httpd.log = {}, []
    httpd.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()
