"""A fault-injecting HTTP proxy for tests: sits between a client and the local Jobs server on 127.0.0.1.

It forwards every request and streams every response (SSE included), and, for requests matching a rule,
can answer an error status instead (with or without forwarding the request first: "the create reached
the server but the answer was a 500"), or cut a streamed response after N bytes of body, the way a
proxy or a load balancer drops a long-lived connection.
"""

from __future__ import annotations

import re
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests

_HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "content-length", "date", "server"}


@dataclass
class Fault:
    """What to do to the next ``times`` requests whose method and path match."""

    method: str
    path: str  # regular expression, searched in the path (query included)
    times: int = 1
    status: int | None = None  # answer this status instead of the server's
    forward: bool = False  # with status: send the request to the server first anyway
    headers: dict[str, str] = field(default_factory=dict)
    cut_after_bytes: int | None = None  # close the connection after this many body bytes

    def matches(self, method: str, path: str) -> bool:
        return self.times > 0 and method == self.method and re.search(self.path, path) is not None


class FaultProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.faults: list[Fault] = []
        self.requests: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                fault = proxy._take(self.command, self.path)
                with proxy._lock:
                    proxy.requests.append((self.command, self.path))
                if fault is not None and fault.status is not None:
                    if fault.forward:
                        self._forward(body, stream=False).close()
                    payload = b'{"error": "injected fault"}'
                    self.send_response(fault.status)
                    for key, value in fault.headers.items():
                        self.send_header(key, value)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                upstream = self._forward(body, stream=True)
                try:
                    self.send_response(upstream.status_code)
                    for key, value in upstream.headers.items():
                        if key.lower() not in _HOP_HEADERS:
                            self.send_header(key, value)
                    if "date" in upstream.headers:
                        self.send_header("Date", upstream.headers["date"])
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    sent = 0
                    for chunk in upstream.raw.stream(None, decode_content=False):
                        if fault is not None and fault.cut_after_bytes is not None:
                            room = fault.cut_after_bytes - sent
                            if len(chunk) >= room:
                                self._chunk(chunk[:room])
                                self.wfile.flush()
                                # An abrupt end: no terminating chunk, the socket just closes.
                                self.connection.shutdown(socket.SHUT_RDWR)
                                self.close_connection = True
                                return
                        sent += len(chunk)
                        self._chunk(chunk)
                    self.wfile.write(b"0\r\n\r\n")
                finally:
                    upstream.close()

            def _chunk(self, data: bytes) -> None:
                if data:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                    self.wfile.flush()

            def _forward(self, body: bytes | None, *, stream: bool) -> requests.Response:
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_HEADERS | {"host"}}
                return requests.request(
                    self.command, proxy.upstream + self.path, headers=headers, data=body, stream=stream,
                    timeout=(5, 180),
                )  # fmt: skip

            do_GET = do_POST = do_PUT = do_DELETE = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="fault-proxy", daemon=True)

    def _take(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.matches(method, path):
                    fault.times -= 1
                    return fault
        return None

    def add(self, fault: Fault) -> Fault:
        with self._lock:
            self.faults.append(fault)
        return fault

    def count(self, method: str, path: str) -> int:
        with self._lock:
            return sum(1 for m, p in self.requests if m == method and re.search(path, p))

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)
