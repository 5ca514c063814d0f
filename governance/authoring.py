"""Policy authoring from the command line: `governance validate FILE` and
`governance explain --profile FILE --request JSON` (docs/POLICY_AUTHORING.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from governance.connectors import connector_hash, connector_problems
from governance.explain import explain_request, request_for
from governance.profile_schema import profile_problems
from governance.profiles import Profile, profile_hash


class AuthoringError(ValueError):
    """A file that cannot be validated or explained; the message names why."""


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise AuthoringError(f"{path}: not a readable JSON file ({type(exc).__name__}: {exc})") from exc


def validate_file(path: Path) -> str:
    """'ok' with the profile's id, version and hash; AuthoringError listing
    every problem, one per line, otherwise."""
    document = _read_json(path)
    is_connector = isinstance(document, dict) and "connector_id" in document
    problems = connector_problems(document) if is_connector else profile_problems(document)
    if problems:
        raise AuthoringError(f"{path}: {len(problems)} problem(s)\n" + "\n".join(f"  {p}" for p in problems))
    if is_connector:  # its hash is what a profile rule pins
        return (
            f"{path}: ok, connector {document['connector_id']} {document['version']} sha256 {connector_hash(document)}"
        )
    return f"{path}: ok, profile {document['profile_id']} {document['version']} sha256 {profile_hash(document)}"


def profile_from_file(path: Path) -> tuple[Profile, list[str]]:
    """A profile file as the gates would use it, and its validation problems.
    An invalid profile is still explained: the pipeline would serve it the
    same way (a gate that cannot read it denies with GATE_EXCEPTION)."""
    document = _read_json(path)
    if not isinstance(document, dict):
        raise AuthoringError(f"{path}: a profile is a JSON object")
    profile = Profile(str(document.get("profile_id")), str(document.get("version")), profile_hash(document), document)
    return profile, profile_problems(document)


def request_body(request: str) -> bytes:
    """`--request`: the body itself, or @FILE. Sent as given, like curl -d."""
    if request.startswith("@"):
        try:
            return Path(request[1:]).read_bytes()
        except OSError as exc:
            raise AuthoringError(f"{request[1:]}: cannot read the request ({type(exc).__name__})") from exc
    return request.encode("utf-8", "surrogateescape")


def headers_from(values: list[str]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for value in values:
        name, sep, rest = value.partition(":")
        if not sep or not name.strip():
            raise AuthoringError(
                f"--header must be 'Name: value', got one without a name or colon (#{len(headers) + 1})"
            )
        headers[name.strip()] = rest.strip()
    return headers


def explain_file(
    profile_path: Path,
    request: str,
    *,
    headers: list[str],
    content_type: str,
    check_credentials: bool,
    roles: list[str] | None = None,
) -> dict[str, Any]:
    profile, problems = profile_from_file(profile_path)
    body = request_body(request)
    http_request = request_for(body, headers=headers_from(headers), content_type=content_type)
    explained = explain_request(http_request, body, profile, check_credentials=check_credentials, roles=roles)
    explained["profile"]["problems"] = problems  # what `governance validate` says of it
    return explained
