"""`http_call_v1`: one HTTP call to an upstream declared by a connector
(governance/connectors.py, docs/CONNECTORS.md), failing closed.

- The action is the connector operation of the same name; the profile rule
  pins the connector. Path parameters are typed and must be one segment of
  unreserved characters; query and body carry only the payload fields the
  operation maps.
- The host is resolved here, each answer is checked (private, loopback,
  link-local, multicast, reserved and unspecified addresses are refused unless
  the connector sets allow_private_addresses), and the connection goes to the
  checked address, with the hostname as Host and TLS server name: a second DNS
  answer (rebinding) is never used.
- Redirects are never followed; a 3xx, a non-2xx, a timeout, a refused
  connection and a response over the size limit are FAILED with their own
  reason codes.
- The credential is read from the environment or a file at call time and put
  in one header; it is never returned, recorded or logged. Records carry
  digests of the request sent and the response received, the upstream status,
  and the connector's id, version and hash.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import re
import socket
import time
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import urllib3
from urllib3.exceptions import HTTPError, NewConnectionError
from urllib3.exceptions import TimeoutError as Urllib3Timeout

from governance.connectors import (
    DEFAULT_PARAMETER_PATTERN,
    TEMPLATE_PARAMETER_RE,
    Connector,
    pinned_connector,
    shipped_connectors,
)
from governance.executors import ActionRequest, ExecutionResult, Executor, ExecutorFailure

READ_CHUNK = 16 * 1024


class _Refused(Exception):
    """Internal: a failure with its reason code, raised before anything is sent."""

    def __init__(self, code: str, **evidence: Any) -> None:
        self.code, self.evidence = code, evidence
        super().__init__(code)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def address_allowed(address: str, *, allow_private: bool) -> bool:
    """Only global unicast addresses, unless the connector allows private ones.
    Multicast, unspecified and reserved ones are refused even then."""
    ip = ipaddress.ip_address(address.split("%")[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_multicast or ip.is_unspecified or ip.is_reserved:
        return False
    if ip.is_private or ip.is_loopback or ip.is_link_local or not ip.is_global:
        return allow_private
    return True


def resolve_checked(host: str, port: int, *, allow_private: bool) -> str:
    """The first address of the DNS answer, after every answer was checked: one
    refused answer refuses the call (an answer set mixing a public and a
    private address is what a rebinding attack sends)."""
    try:
        answers = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise _Refused("UPSTREAM_UNREACHABLE", problem="dns") from None
    addresses = [str(a[4][0]) for a in answers]
    if not addresses:
        raise _Refused("UPSTREAM_UNREACHABLE", problem="dns")
    refused = [a for a in addresses if not address_allowed(a, allow_private=allow_private)]
    if refused:
        raise _Refused("UPSTREAM_ADDRESS_REFUSED", problem="address_not_allowed", addresses=len(refused))
    return addresses[0]


def _path_value(name: str, spec: Mapping[str, Any], value: Any) -> str:
    if spec.get("type") == "integer":
        if not isinstance(value, int) or isinstance(value, bool):
            raise _Refused("CONNECTOR_PARAMETER_INVALID", parameter=name, problem="not_an_integer")
        return str(value)
    if not isinstance(value, str):
        raise _Refused("CONNECTOR_PARAMETER_INVALID", parameter=name, problem="not_a_string")
    # Both patterns must match: the default keeps a value to one segment of
    # unreserved characters whatever the connector's own pattern says.
    if value in (".", "..") or not re.fullmatch(DEFAULT_PARAMETER_PATTERN, value) or (
        "pattern" in spec and not re.fullmatch(spec["pattern"], value)
    ):
        raise _Refused("CONNECTOR_PARAMETER_INVALID", parameter=name, problem="not_allowed_characters")
    return quote(value, safe="")


def build_target(connector: Connector, operation: Mapping[str, Any], payload: Mapping[str, Any]) -> tuple[str, bytes | None]:
    """The path with query, and the body, of the call; raises _Refused."""
    parameters = operation.get("parameters", {})

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in payload:
            raise _Refused("CONNECTOR_PARAMETER_INVALID", parameter=name, problem="missing")
        return _path_value(name, parameters[name], payload[name])

    base_path = urlsplit(connector.document["base_url"]).path.rstrip("/")
    path = base_path + TEMPLATE_PARAMETER_RE.sub(substitute, operation["path"])
    query = {upstream: payload[field] for upstream, field in operation.get("query", {}).items() if field in payload}
    if query:
        path += "?" + urlencode(query)
    body_fields = {upstream: payload[field] for upstream, field in operation.get("body", {}).items() if field in payload}
    body = json.dumps(body_fields, separators=(",", ":"), sort_keys=True).encode() if "body" in operation else None
    return path, body


def credential_header(connector: Connector) -> dict[str, str]:
    """The credential header, read now from the environment or the secret file."""
    credential = connector.document.get("credential")
    if credential is None:
        return {}
    if "from_env" in credential:
        secret = os.environ.get(credential["from_env"], "")
    else:
        try:
            secret = Path(credential["from_file"]).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeError):
            secret = ""
    if not secret or "\n" in secret or "\r" in secret:
        raise _Refused("CONNECTOR_UNAVAILABLE", problem="credential_unavailable")
    scheme = credential.get("scheme")
    return {credential["header"]: f"{scheme} {secret}" if scheme else secret}


class HttpCallExecutor(Executor):
    executor_id = "http_call_v1"
    version = "1.0.0"
    capabilities = frozenset({"http.call"})

    @cached_property
    def actions(self) -> frozenset[str]:  # type: ignore[override]
        """The operations of every connector in VERITTA_CONNECTORS_DIR: an
        action is routed here under its operation's name."""
        return frozenset(name for c in shipped_connectors().values() for name in c.operations)

    def execute(self, request: ActionRequest) -> ExecutionResult:
        try:
            connector = pinned_connector(dict(request.rule))
        except LookupError:
            raise ExecutorFailure("CONNECTOR_UNAVAILABLE", {"problem": "connector_missing_or_changed"}) from None
        evidence: dict[str, Any] = {**connector.evidence(), "operation": request.action}
        try:
            return self._call(connector, request, evidence)
        except _Refused as refused:
            raise ExecutorFailure(refused.code, {**evidence, **refused.evidence}) from None

    def _call(self, connector: Connector, request: ActionRequest, evidence: dict[str, Any]) -> ExecutionResult:
        document = connector.document
        operation = connector.operations.get(request.action)
        if operation is None:
            raise _Refused("CONNECTOR_UNAVAILABLE", problem="no_such_operation")
        path, body = build_target(connector, operation, request.payload)
        method = operation["method"]
        evidence["request_digest"] = _sha256(json.dumps([method, path]).encode() + b"\n" + (body or b""))
        base = urlsplit(document["base_url"])
        port = base.port or (443 if base.scheme == "https" else 80)
        host = base.hostname or ""
        deadline = min(time.monotonic() + float(document.get("timeout_s", 5)), request.deadline)
        address = resolve_checked(host, port, allow_private=bool(document.get("allow_private_addresses", False)))
        headers = {
            **document.get("headers", {}),
            "Host": base.netloc.rpartition("@")[2],
            "Accept-Encoding": "identity",  # the size limit is on the bytes we read: no compressed bombs
            **({"Content-Type": "application/json"} if body is not None else {}),
            **credential_header(connector),
        }
        limit = int(document.get("max_response_bytes", 65536))
        status, data = self._send(base.scheme, address, port, host, method, path, body, headers, deadline, limit)
        evidence.update(upstream_status=status, response_digest=_sha256(data), response_bytes=len(data))
        if 300 <= status < 400:
            raise _Refused("UPSTREAM_REDIRECT_REFUSED", upstream_status=status)
        if not 200 <= status < 300:
            raise _Refused("UPSTREAM_ERROR_STATUS", upstream_status=status)
        return ExecutionResult(output=self._output(operation, data, status), evidence=evidence)

    def _send(
        self, scheme: str, address: str, port: int, host: str, method: str, path: str,
        body: bytes | None, headers: dict[str, str], deadline: float, limit: int,
    ) -> tuple[int, bytes]:
        left = deadline - time.monotonic()
        if left <= 0:
            raise _Refused("UPSTREAM_TIMEOUT", problem="no_time_left")
        timeout = urllib3.Timeout(connect=left, read=left)
        pool: urllib3.HTTPConnectionPool
        if scheme == "https":
            # Connect to the checked address; verify the certificate for the name.
            pool = urllib3.HTTPSConnectionPool(
                address, port, timeout=timeout, retries=False, maxsize=1,
                server_hostname=host, assert_hostname=host, cert_reqs="CERT_REQUIRED",
            )
        else:
            pool = urllib3.HTTPConnectionPool(address, port, timeout=timeout, retries=False, maxsize=1)
        try:
            response = pool.urlopen(
                method, path, body=body, headers=headers, redirect=False, retries=False,
                preload_content=False, assert_same_host=False,
            )
            try:
                declared = response.headers.get("Content-Length", "")
                if declared.isdigit() and int(declared) > limit:
                    raise _Refused("UPSTREAM_RESPONSE_TOO_LARGE", limit=limit, upstream_status=response.status)
                data = b""
                while len(data) <= limit:
                    if time.monotonic() > deadline:
                        raise _Refused("UPSTREAM_TIMEOUT", problem="read_deadline", upstream_status=response.status)
                    chunk = response.read(READ_CHUNK, decode_content=False)
                    if not chunk:
                        break
                    data += chunk
                if len(data) > limit:
                    raise _Refused("UPSTREAM_RESPONSE_TOO_LARGE", limit=limit, upstream_status=response.status)
                return response.status, data
            finally:
                response.release_conn()
        except NewConnectionError:  # refused or reset (urllib3 makes it a kind of ConnectTimeoutError)
            raise _Refused("UPSTREAM_UNREACHABLE", problem="connection_refused") from None
        except Urllib3Timeout:
            raise _Refused("UPSTREAM_TIMEOUT", problem="socket_timeout") from None
        except HTTPError as exc:
            raise _Refused("UPSTREAM_UNREACHABLE", problem="connection", exc_class=type(exc).__name__) from None
        finally:
            pool.close()

    def _output(self, operation: Mapping[str, Any], data: bytes, status: int) -> dict[str, Any]:
        """Only the response fields the operation returns, and the status."""
        returns = operation.get("returns", [])
        if not returns:
            return {"upstream_status": status}
        try:
            parsed = json.loads(data)
        except ValueError:
            raise _Refused("UPSTREAM_RESPONSE_INVALID", problem="not_json", upstream_status=status) from None
        if not isinstance(parsed, dict):
            raise _Refused("UPSTREAM_RESPONSE_INVALID", problem="not_an_object", upstream_status=status)
        return {"upstream_status": status, "response": {k: parsed[k] for k in returns if k in parsed}}
