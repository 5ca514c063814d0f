"""Behind a proxy, per-address limits key on the client the proxy names, and
only a trusted proxy can name it: a forwarding header from anyone else
changes nothing (docs/DEPLOYMENT.md "Behind a proxy").

The through-server test puts a real forwarding proxy (below) in front of
gunicorn. The proxy and the clients each speak from their own loopback
address (127.0.0.2 for the proxy, 127.0.0.1x for clients), so gunicorn sees
the proxy's address as REMOTE_ADDR and only it is listed as trusted."""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from django.test import RequestFactory

from conftest import API_KEY
from tests.support.servers import free_port
from veritta_site.proxies import client_address

SMOKE = b'{"action": "test_action", "event_type": "test_event"}'
PROXY_ADDRESS = "127.0.0.2"


# --- the rule, request by request -------------------------------------------------------


@pytest.fixture
def behind(settings):
    def configure(networks: list[str], *, hops: int = 1, header: str = "X-Forwarded-For") -> None:
        settings.VERITTA_TRUSTED_PROXIES = networks
        settings.VERITTA_TRUSTED_PROXY_HOPS = hops
        settings.VERITTA_TRUSTED_PROXY_HEADER = header

    return configure


def address_of(peer: str, **headers: str) -> str | None:
    return client_address(RequestFactory().get("/", REMOTE_ADDR=peer, **headers))


def test_without_trusted_proxies_the_peer_is_the_client_whatever_it_sends(behind):
    behind([])
    assert address_of("198.51.100.9", HTTP_X_FORWARDED_FOR="203.0.113.1") == "198.51.100.9"


def test_a_trusted_proxy_names_the_client(behind):
    behind(["10.0.0.0/8"])
    assert address_of("10.0.0.5", HTTP_X_FORWARDED_FOR="203.0.113.1") == "203.0.113.1"


def test_a_header_from_an_untrusted_peer_changes_nothing(behind):
    behind(["10.0.0.0/8"])
    assert address_of("198.51.100.9", HTTP_X_FORWARDED_FOR="203.0.113.1") == "198.51.100.9"


def test_a_spoofed_entry_left_of_the_proxys_own_is_not_believed(behind):
    # The client sent "X-Forwarded-For: 192.0.2.66"; the proxy appended the real peer.
    behind(["10.0.0.0/8"])
    assert address_of("10.0.0.5", HTTP_X_FORWARDED_FOR="192.0.2.66, 203.0.113.1") == "203.0.113.1"


def test_hops_bound_how_far_back_the_walk_goes(behind):
    chain = {"HTTP_X_FORWARDED_FOR": "192.0.2.66, 203.0.113.1, 10.0.0.7"}
    behind(["10.0.0.0/8"], hops=1)  # one proxy in front: 10.0.0.7 is a client, not ours
    assert address_of("10.0.0.5", **chain) == "10.0.0.7"
    behind(["10.0.0.0/8"], hops=2)  # two proxies: the walk passes 10.0.0.7 and stops at the client
    assert address_of("10.0.0.5", **chain) == "203.0.113.1"


def test_an_unreadable_entry_stops_at_the_proxy_that_sent_it(behind):
    behind(["10.0.0.0/8"])
    assert address_of("10.0.0.5", HTTP_X_FORWARDED_FOR="unknown") == "10.0.0.5"
    assert address_of("10.0.0.5", HTTP_X_FORWARDED_FOR="<script>") == "10.0.0.5"


def test_the_forwarded_header_of_rfc_7239(behind):
    behind(["10.0.0.0/8", "fd00::/8"], header="Forwarded")
    value = 'for=192.0.2.60;proto=http, for="[2001:db8:cafe::17]:4711"'
    assert address_of("10.0.0.5", HTTP_FORWARDED=value) == "2001:db8:cafe::17"
    assert address_of("fd00::1", HTTP_FORWARDED="for=192.0.2.60:8080") == "192.0.2.60"
    assert address_of("10.0.0.5", HTTP_FORWARDED="for=_hidden") == "10.0.0.5"
    # With Forwarded configured, X-Forwarded-For is not read at all.
    assert address_of("10.0.0.5", HTTP_X_FORWARDED_FOR="203.0.113.1") == "10.0.0.5"


def test_a_setting_that_cannot_be_read_refuses_to_start(behind):
    from veritta_site.checks import trusted_proxies_check

    behind(["10.0.0.0/33"])
    assert [e.id for e in trusted_proxies_check()] == ["veritta.E010"]
    behind([], header="X-Real-IP")
    assert [e.id for e in trusted_proxies_check()] == ["veritta.E011"]


# --- through a real proxy in front of gunicorn ---------------------------------------------


class ForwardingProxy:
    """A minimal reverse proxy: forwards each request to gunicorn from
    127.0.0.2, appending the peer's address to X-Forwarded-For as nginx's
    `proxy_add_x_forwarded_for` does."""

    def __init__(self, upstream_port: int) -> None:
        upstream = upstream_port

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                sent = self.headers.get("X-Forwarded-For")
                headers["X-Forwarded-For"] = f"{sent}, {self.client_address[0]}" if sent else self.client_address[0]
                conn = http.client.HTTPConnection("127.0.0.1", upstream, timeout=30, source_address=(PROXY_ADDRESS, 0))
                conn.request("POST", self.path, body=body, headers=headers)
                answer = conn.getresponse()
                payload = answer.read()
                self.send_response(answer.status)
                for name, value in answer.getheaders():
                    if name.lower() not in ("connection", "transfer-encoding", "content-length", "date", "server"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
                conn.close()

            def log_message(self, *args: object) -> None:
                pass

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> ForwardingProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def post(port: int, *, source: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    """POST /process from a chosen loopback address; (status, trace id)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30, source_address=(source, 0))
    conn.request(
        "POST",
        "/process",
        body=SMOKE,
        headers={"X-API-Key": API_KEY, "Content-Type": "application/json", **(headers or {})},
    )
    answer = conn.getresponse()
    body = json.loads(answer.read())
    conn.close()
    return answer.status, body["trace_id"]


def client_digests(log: Path, traces: list[str]) -> dict[str, str]:
    """trace id -> the client digest its decision record carries, once every
    trace is in the mirror (on PostgreSQL the sequencer writes it moments later)."""
    deadline = time.monotonic() + 15
    while True:
        records = (json.loads(line) for line in log.read_text().splitlines())
        found = {r["trace_id"]: r["client"] for r in records if r["event_type"] == "decision_audit"}
        if set(traces) <= set(found) or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


@pytest.fixture
def proxied_server(start_app_server) -> Iterator[tuple[int, int, Path]]:
    server = start_app_server(
        env={"VERITTA_TRUSTED_PROXIES": f"{PROXY_ADDRESS}/32", "VERITTA_RATE_LIMIT_ADDRESS_PER_MIN": "3"}
    )
    with ForwardingProxy(server.port) as proxy:
        yield proxy.port, server.port, server.tmp / "audit.log"


def test_through_a_trusted_proxy_each_client_has_its_own_limit(proxied_server):
    proxy, _, log = proxied_server
    first = [post(proxy, source="127.0.0.11") for _ in range(4)]
    assert [status for status, _ in first] == [200, 200, 200, 429]
    # Another client behind the same proxy is not throttled by the first.
    other_status, other_trace = post(proxy, source="127.0.0.12")
    assert other_status == 200
    digests = client_digests(log, [first[0][1], first[3][1], other_trace])
    assert digests[first[0][1]] == digests[first[3][1]] != digests[other_trace]


def test_a_spoofed_header_sent_through_the_proxy_or_around_it_changes_nothing(proxied_server):
    proxy, direct, log = proxied_server
    # Through the proxy: a fresh made-up address each time still counts against 127.0.0.13.
    spoofed = [post(proxy, source="127.0.0.13", headers={"X-Forwarded-For": f"198.51.100.{i}"}) for i in range(4)]
    assert [status for status, _ in spoofed] == [200, 200, 200, 429]
    # Around it, straight to gunicorn: the peer is not a trusted proxy, its header is ignored.
    around = [post(direct, source="127.0.0.14", headers={"X-Forwarded-For": f"198.51.100.{i}"}) for i in range(4)]
    assert [status for status, _ in around] == [200, 200, 200, 429]
    digests = client_digests(log, [trace for _, trace in spoofed + around])
    assert len({digests[trace] for _, trace in spoofed}) == 1
    assert len({digests[trace] for _, trace in around}) == 1
    assert digests[spoofed[0][1]] != digests[around[0][1]]
