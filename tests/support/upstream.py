"""A real HTTP upstream for http_call_v1's tests: the stdlib ThreadingHTTPServer
on 127.0.0.1 in a thread, with one route per behaviour the executor must
handle. It keeps what it received (paths and whether the credential came),
never the credential itself."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Upstream:
    def __init__(self, credential: str) -> None:
        self.credential = credential
        self.received: list[dict[str, Any]] = []
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                self._handle()

            def do_POST(self) -> None:
                self._handle()

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                upstream.received.append({
                    "method": self.command,
                    "path": self.path,
                    "host": self.headers.get("Host"),
                    "authorized": self.headers.get("Authorization") == f"Bearer {upstream.credential}",
                    "body": json.loads(body) if body else None,
                })
                route = self.path.split("?")[0]
                if route.startswith("/api/tickets/"):
                    ticket = route.rsplit("/", 1)[1]
                    self._json(200, {"id": ticket, "status": "open", "internal_note": "never returned", "title": "Printer"})
                elif route == "/api/tickets":
                    self._json(201, {"id": "T-1001", "status": "created", "echo_title_len": len((json.loads(body) or {}).get("title", ""))})
                elif route == "/api/slow":
                    time.sleep(3)
                    self._json(200, {"late": True})
                elif route == "/api/big":
                    self._json(200, {"blob": "x" * 200_000})
                elif route == "/api/redirect":
                    self.send_response(302)
                    self.send_header("Location", "http://example.com/stolen")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                elif route == "/api/broken":
                    self._json(503, {"error": "down"})
                else:
                    self._json(404, {"error": "no route"})

            def _json(self, status: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                try:
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the executor gave up first, as it should

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Upstream:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()
