"""Connectors: versioned, hashed descriptions of an upstream HTTP API that
`http_call_v1` may call (docs/CONNECTORS.md).

A connector is data, like a profile: a JSON file in VERITTA_CONNECTORS_DIR
with an id, a version, the base URL, the operations (method, path template
with typed parameters, which payload fields go to the query and the body,
which response fields come back), limits, and where the credential comes
from. A profile rule that uses one pins its id, version and sha256, so the
profile's hash, and through it the VERITTA_PROFILES_FINGERPRINT lock, covers
the connector: a connector that is missing or changed is a set the server may
not serve (governance.selectors.active_set_problem), and the server refuses
to start, like for a changed profile.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings

from veritta_site.canonical import digest_of
from veritta_site.semver import parse_semver

METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE"}
PARAMETER_TYPES = {"string", "integer"}
# A path parameter is one path segment of unreserved characters: no "/", no
# "%", no "?" or "#", so it can neither climb the path nor add a query.
DEFAULT_PARAMETER_PATTERN = r"^[A-Za-z0-9_~-][A-Za-z0-9._~-]{0,127}$"
TEMPLATE_PARAMETER_RE = re.compile(r"\{([a-z][a-z0-9_]{0,63})\}")
HEADER_NAME_RE = re.compile(r"^[A-Za-z0-9-]{1,64}$")
MAX_TIMEOUT_S = 60.0
MAX_RESPONSE_BYTES = 16 * 1024 * 1024
TOP_LEVEL_KEYS = {
    "connector_id", "version", "description", "base_url", "allow_private_addresses",
    "timeout_s", "max_response_bytes", "headers", "credential", "operations",
}
OPERATION_KEYS = {"method", "path", "parameters", "query", "body", "returns", "description"}
CREDENTIAL_KEYS = {"header", "scheme", "from_env", "from_file"}


@dataclass(frozen=True)
class Connector:
    connector_id: str
    version: str
    sha256: str
    document: dict[str, Any]

    @property
    def operations(self) -> dict[str, Any]:
        return self.document["operations"]

    def evidence(self) -> dict[str, str]:
        return {"connector_id": self.connector_id, "connector_version": self.version, "connector_sha256": self.sha256}


def connector_hash(document: dict[str, Any]) -> str:
    return digest_of(document)


def _base_url_problems(value: Any) -> list[str]:
    if not isinstance(value, str):
        return ["base_url: required, an http:// or https:// URL"]
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return ["base_url: required, an http:// or https:// URL"]
    if parts.username or parts.password or parts.query or parts.fragment:
        return ["base_url: no user, password, query or fragment (the credential goes in `credential`)"]
    return []


def _operation_problems(path: str, operation: Any) -> list[str]:
    if not isinstance(operation, dict):
        return [f"{path}: must be an object (an operation)"]
    problems = [f"{path}.{k}: unknown key" for k in sorted(set(operation) - OPERATION_KEYS)]
    if operation.get("method") not in METHODS:
        problems.append(f"{path}.method: must be one of {sorted(METHODS)}")
    template = operation.get("path")
    if not isinstance(template, str) or not template.startswith("/") or "?" in template or "#" in template or ".." in template:
        return [*problems, f"{path}.path: required, an absolute path template without query, fragment or '..'"]
    parameters = operation.get("parameters", {})
    if not isinstance(parameters, dict):
        return [*problems, f"{path}.parameters: must be an object of typed parameters"]
    named = set(TEMPLATE_PARAMETER_RE.findall(template))
    if TEMPLATE_PARAMETER_RE.sub("", template).count("{") or TEMPLATE_PARAMETER_RE.sub("", template).count("}"):
        problems.append(f"{path}.path: a parameter is written {{lowercase_name}}")
    for name in sorted(named - set(parameters)):
        problems.append(f"{path}.parameters.{name}: the path names it, give its type")
    for name, spec in sorted(parameters.items()):
        if name not in named:
            problems.append(f"{path}.parameters.{name}: not in the path template")
        if not isinstance(spec, dict) or spec.get("type") not in PARAMETER_TYPES:
            problems.append(f"{path}.parameters.{name}.type: must be one of {sorted(PARAMETER_TYPES)}")
        elif "pattern" in spec:
            try:
                re.compile(spec["pattern"])
            except (re.error, TypeError):
                problems.append(f"{path}.parameters.{name}.pattern: not a regular expression")
    for key in ("query", "body"):
        mapping = operation.get(key, {})
        if not isinstance(mapping, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in mapping.items()):
            problems.append(f"{path}.{key}: must map upstream names to payload field names")
    if "body" in operation and operation.get("method") == "GET":
        problems.append(f"{path}.body: a GET sends no body")
    returns = operation.get("returns", [])
    if not isinstance(returns, list) or not all(isinstance(r, str) for r in returns):
        problems.append(f"{path}.returns: must be a list of response field names")
    return problems


def _credential_problems(credential: Any) -> list[str]:
    if credential is None:
        return []
    if not isinstance(credential, dict):
        return ["credential: must be an object"]
    problems = [f"credential.{k}: unknown key" for k in sorted(set(credential) - CREDENTIAL_KEYS)]
    if not isinstance(credential.get("header"), str) or not HEADER_NAME_RE.match(credential["header"]):
        problems.append("credential.header: required, the header that carries it")
    sources = [k for k in ("from_env", "from_file") if k in credential]
    if len(sources) != 1 or not isinstance(credential[sources[0]], str) or not credential[sources[0]]:
        problems.append("credential: exactly one of from_env (a variable name) or from_file (a path)")
    return problems


def connector_problems(document: Any) -> list[str]:
    """Every problem of a connector document, each `field.path: what is wrong`."""
    if not isinstance(document, dict):
        return ["(document): must be a JSON object"]
    problems = [f"{k}: unknown key" for k in sorted(set(document) - TOP_LEVEL_KEYS)]
    if not isinstance(document.get("connector_id"), str) or not re.match(r"^[a-z][a-z0-9_.-]{0,63}$", document["connector_id"]):
        problems.append("connector_id: required, lowercase letters, digits, _ . -")
    if parse_semver(document.get("version")) is None:
        problems.append("version: required, a semantic version MAJOR.MINOR.PATCH")
    problems += _base_url_problems(document.get("base_url"))
    if not isinstance(document.get("allow_private_addresses", False), bool):
        problems.append("allow_private_addresses: must be true or false")
    timeout = document.get("timeout_s", 5)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout <= MAX_TIMEOUT_S:
        problems.append(f"timeout_s: must be a number of seconds in (0, {MAX_TIMEOUT_S:g}]")
    size = document.get("max_response_bytes", 65536)
    if isinstance(size, bool) or not isinstance(size, int) or not 0 < size <= MAX_RESPONSE_BYTES:
        problems.append(f"max_response_bytes: must be an integer in (0, {MAX_RESPONSE_BYTES}]")
    headers = document.get("headers", {})
    if not isinstance(headers, dict) or not all(
        isinstance(k, str) and HEADER_NAME_RE.match(k) and isinstance(v, str) and "\n" not in v and "\r" not in v
        for k, v in headers.items()
    ):
        problems.append("headers: must map header names to single-line strings")
    problems += _credential_problems(document.get("credential"))
    operations = document.get("operations")
    if not isinstance(operations, dict) or not operations:
        return [*problems, "operations: required, an object with at least one operation"]
    for name, operation in sorted(operations.items()):
        problems += _operation_problems(f"operations.{name}", operation)
    return problems


class ConnectorFileError(ValueError):
    pass


def read_connector_file(path: Path) -> dict[str, Any]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConnectorFileError(f"{path.name}: {type(exc).__name__}") from exc
    problems = connector_problems(document)
    if problems:
        raise ConnectorFileError(f"{path.name}: {problems[0]}")
    return document


@cache
def _connectors_in(directory: str) -> dict[tuple[str, str], Connector]:
    """The connector files of a directory, by (id, version), read once per process."""
    found: dict[tuple[str, str], Connector] = {}
    for path in sorted(Path(directory).glob("*.json")):
        document = read_connector_file(path)
        key = (document["connector_id"], document["version"])
        if key in found:
            raise ConnectorFileError(f"{path.name}: connector {key[0]} {key[1]} is defined twice")
        found[key] = Connector(key[0], key[1], connector_hash(document), document)
    return found


def shipped_connectors() -> dict[tuple[str, str], Connector]:
    return _connectors_in(str(settings.VERITTA_CONNECTORS_DIR))


def connectors_cache_clear() -> None:
    _connectors_in.cache_clear()


def pinned_connector(rule: Any) -> Connector:
    """The connector a profile rule pins, exactly as pinned; raises
    LookupError naming why when it is missing, unreadable or changed."""
    pin = rule.get("connector") if isinstance(rule, dict) else None
    if not isinstance(pin, dict) or not {"connector_id", "version", "sha256"} <= set(pin):
        raise LookupError("the rule's connector must pin connector_id, version and sha256")
    try:
        connector = shipped_connectors().get((pin["connector_id"], pin["version"]))
    except ConnectorFileError as exc:
        raise LookupError(f"connector files unreadable: {exc}") from None
    if connector is None:
        raise LookupError(f"connector {pin['connector_id']} {pin['version']} is not in VERITTA_CONNECTORS_DIR")
    if connector.sha256 != pin["sha256"]:
        raise LookupError(f"connector {connector.connector_id} {connector.version} does not match the sha256 its profile pins")
    return connector


def connector_pin_problem(action: str, rule: Any) -> str | None:
    """Why a rule's connector cannot be used for `action`, or None (also None
    for a rule that names no connector)."""
    if not isinstance(rule, dict) or "connector" not in rule:
        return None
    try:
        connector = pinned_connector(rule)
    except LookupError as exc:
        return str(exc)
    if action not in connector.operations:
        return f"connector {connector.connector_id} {connector.version} has no operation {action!r}"
    return None
