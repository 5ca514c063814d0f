"""Fixtures of the operations tests: a local webhook receiver and metric scraping."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests
from standardwebhooks import Webhook, WebhookVerificationError

from conftest import ADMIN_KEY
from tests.settings import TEST_ENV


class WebhookReceiver:
    """An HTTP server on 127.0.0.1 that checks each POST as docs/OPERATIONS.md
    "Receiving alerts" tells a receiver to (Standard Webhooks signature and
    timestamp, then the id not seen before) and keeps the JSON bodies it
    accepts; refusals answer 401 and are kept in `refused` with the reason.
    `fail_first` answers 500 to that many requests before checking."""

    def __init__(self, fail_first: int = 0, secret: str = TEST_ENV["VERITTA_ALERT_WEBHOOK_SECRET"]) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.requests: list[tuple[dict[str, str], bytes]] = []  # accepted, as received
        self.refused: list[str] = []
        self.seen_ids: set[str] = set()
        self.attempts = 0
        self.fail_first = fail_first
        self.webhook = Webhook(secret)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                receiver.attempts += 1
                if receiver.attempts <= receiver.fail_first:
                    self.send_response(500)
                    self.end_headers()
                    return
                headers = dict(self.headers.items())
                refusal = receiver.refusal(headers, body)
                if refusal:
                    receiver.refused.append(refusal)
                    self.send_response(401)
                else:
                    receiver.requests.append((headers, body))
                    receiver.bodies.append(json.loads(body))
                    self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def refusal(self, headers: dict[str, str], body: bytes) -> str | None:
        """Why this delivery is refused, or None: the receiver's checks."""
        try:
            self.webhook.verify(body, headers)  # signature over id.timestamp.body; timestamp within 5 min
        except WebhookVerificationError as exc:
            return str(exc)
        message_id = {k.lower(): v for k, v in headers.items()}["webhook-id"]
        if message_id in self.seen_ids:
            return "replayed webhook-id"
        self.seen_ids.add(message_id)
        return None

    def wait_for(self, count: int, timeout: float = 15) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while len(self.bodies) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return list(self.bodies)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    yield receiver
    receiver.stop()


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$")


def scrape(url: str, *, key: str = ADMIN_KEY) -> dict[str, float]:
    """GET /metrics and parse the samples: {'name{labels}': value}."""
    response = requests.get(url + "/metrics", headers={"X-ADMIN-KEY": key}, timeout=30)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/plain")
    samples: dict[str, float] = {}
    for line in response.text.splitlines():
        match = _SAMPLE.match(line)
        if match:
            samples[match.group(1) + (match.group(2) or "")] = float(match.group(3))
    return samples


def sample(samples: dict[str, float], name: str, **labels: str) -> float:
    """The sum of the samples of `name` whose labels include `labels`."""
    total = 0.0
    for key, value in samples.items():
        metric, _, rest = key.partition("{")
        if metric != name:
            continue
        if all(f'{k}="{v}"' in rest for k, v in labels.items()):
            total += value
    return total
