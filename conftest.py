"""Named fixtures shared by the whole suite."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.test import Client

from tests.settings import TEST_ENV
from tests.support.appserver import AppServer
from tests.support.campaign import LEAKS

# The security campaign's figures and the leak scan run after the whole suite.
pytest_plugins = ["tests.support.campaign"]

API_KEY = TEST_ENV["VERITTA_BETA_API_KEY"]
ADMIN_KEY = TEST_ENV["VERITTA_ADMIN_API_KEY"]


@pytest.fixture
def audit_log(settings: Any, tmp_path: Path) -> Path:
    """A fresh JSONL mirror and checkpoint dir for this test."""
    settings.VERITTA_AUDIT_LOG_PATH = tmp_path / "audit.log"
    settings.VERITTA_AUDIT_CHECKPOINT_DIR = tmp_path / "checkpoints"
    return settings.VERITTA_AUDIT_LOG_PATH


@pytest.fixture
def loaded_profiles(db: None) -> None:
    from governance.selectors import profile_cache_clear
    from governance.services import profiles_load

    profiles_load()
    profile_cache_clear()


@pytest.fixture
def api(loaded_profiles: None, audit_log: Path) -> ApiClient:
    """The Django test client, speaking JSON to a migrated, loaded database."""
    return ApiClient()


class ApiClient(Client):
    def process(self, payload: Any, *, key: str | None = API_KEY, raw: bytes | None = None, **headers: Any) -> Any:
        content_type = headers.pop("content_type", "application/json")
        extra = {"HTTP_X_API_KEY": key} if key is not None else {}
        extra.update(headers)
        data = raw if raw is not None else json.dumps(payload)
        LEAKS.add_payload(payload)  # must never be stored: the leak scan looks for it
        return self.post("/process", data=data, content_type=content_type, **extra)


@pytest.fixture
def audit_records(db: None) -> Callable[..., list[dict[str, Any]]]:
    """The audit records (parsed bodies) in seq order, optionally for one trace."""
    from audit.models import AuditRecord

    def read(trace_id: str | None = None) -> list[dict[str, Any]]:
        qs = AuditRecord.objects.order_by("seq")
        if trace_id:
            qs = qs.filter(trace_id=trace_id)
        return [json.loads(body) for body in qs.values_list("body", flat=True)]

    return read


@pytest.fixture(scope="module")
def app_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppServer]:
    """A real gunicorn server (2 workers) on its own fresh database."""
    server = AppServer(tmp_path_factory.mktemp("app"), workers=2).prepare().start()
    yield server
    server.stop()


@pytest.fixture
def start_app_server(tmp_path: Path) -> Iterator[Callable[..., AppServer]]:
    """Factory for servers with their own settings; all are stopped after the test."""
    started: list[AppServer] = []

    def start(*, workers: int = 2, env: dict[str, str] | None = None, prepare: bool = True, **kw: Any) -> AppServer:
        server = AppServer(tmp_path / f"srv{len(started)}", workers=workers, env=env, **kw)
        started.append(server)
        if prepare:
            server.prepare()
        return server.start()

    yield start
    for server in started:
        server.stop()


TEST_PROFILES_DIR = Path(__file__).resolve().parent / "tests" / "profiles"


@pytest.fixture
def test_profiles(settings: Any, db: None, audit_log: Path) -> Iterator[None]:
    """The test profile set and the test executors (slow, exploding, ...)."""
    from governance.profiles import shipped_fingerprint
    from governance.registry import executor_registry
    from governance.selectors import profile_cache_clear
    from governance.services import profiles_load
    from tests.executors import TEST_EXECUTORS

    settings.VERITTA_PROFILES_DIR = TEST_PROFILES_DIR
    settings.VERITTA_PROFILES_FINGERPRINT = shipped_fingerprint(TEST_PROFILES_DIR)
    settings.VERITTA_EXECUTORS = [*settings.VERITTA_EXECUTORS, *TEST_EXECUTORS.split(",")]
    settings.VERITTA_EXECUTOR_TIMEOUT_S = 0.5
    executor_registry.cache_clear()
    profile_cache_clear()
    profiles_load()
    yield
    executor_registry.cache_clear()
    profile_cache_clear()


def assert_envelope_codes_catalogued(status: int, content_type: str, body: bytes, *, path: str = "") -> None:
    """Every error response must be the envelope with catalogued codes only
    (but a browser in the console gets it as the console's error page)."""
    from veritta_site.errors import CATALOGUE

    if status < 400:
        return
    if path.startswith("/console/") and content_type.startswith("text/html"):
        assert b'id="console-error"' in body, f"error {status} is not the console's error page: {body[:200]!r}"
        return
    assert content_type.startswith("application/json"), f"error {status} is not JSON: {body[:200]!r}"
    envelope = json.loads(body)
    assert set(envelope) == {"status_code", "reason_codes", "trace_id", "message", "details"}, envelope
    assert envelope["status_code"] == status
    assert envelope["reason_codes"], "reason_codes must not be empty"
    unknown = [c for c in envelope["reason_codes"] if c not in CATALOGUE or CATALOGUE[c].status == 0]
    assert not unknown, f"response carries codes outside the catalogue: {unknown}"


def assert_no_secret_in(body: bytes) -> None:
    """No key, token or digest in a response, but a token in the answer that issues it."""
    issued: list[str] = []
    if body.startswith(b"{") and b'"token"' in body:
        token = json.loads(body).get("token")
        if isinstance(token, str):
            LEAKS.add_secret(token)
            issued = [token]
    leaked = LEAKS.check_response(body, issued=issued)
    assert not leaked, f"a response carries a secret or its digest ({len(leaked)} found)"


@pytest.fixture(autouse=True)
def _every_response_uses_catalogued_codes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Applied to every test: the test client and requests both check each answer."""
    import requests

    original_client = Client.request
    original_session = requests.Session.request

    def client_request(self: Client, **request: Any) -> Any:
        response = original_client(self, **request)
        if not getattr(response, "streaming", False):
            path = str(request.get("PATH_INFO", ""))
            assert_envelope_codes_catalogued(response.status_code, response.get("Content-Type", ""), response.content, path=path)
            assert_no_secret_in(response.content)
        return response

    def session_request(self: requests.Session, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        if url.endswith("/process") and isinstance(kwargs.get("json"), dict):
            LEAKS.add_payload(kwargs["json"])
        if url.endswith("/console/login/") and isinstance(kwargs.get("data"), dict):
            LEAKS.add_console_username(str(kwargs["data"].get("username", "")))
        response = original_session(self, method, url, *args, **kwargs)
        if "127.0.0.1" in url and not kwargs.get("stream"):
            path = urlsplit(url).path
            assert_envelope_codes_catalogued(response.status_code, response.headers.get("Content-Type", ""), response.content, path=path)
            assert_no_secret_in(response.content)
        return response

    monkeypatch.setattr(Client, "request", client_request)
    monkeypatch.setattr(requests.Session, "request", session_request)


def env_for_test_profiles() -> dict[str, str]:
    """Server settings for the test profile set and test executors."""
    from governance.profiles import shipped_fingerprint
    from tests.executors import TEST_EXECUTORS

    return {
        "VERITTA_PROFILES_DIR": str(TEST_PROFILES_DIR),
        "VERITTA_PROFILES_FINGERPRINT": shipped_fingerprint(TEST_PROFILES_DIR),
        "VERITTA_EXTRA_EXECUTORS": TEST_EXECUTORS,
        "VERITTA_EXECUTOR_TIMEOUT_S": "0.5",
    }


@pytest.fixture(scope="module")
def app_server_with_test_profiles(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppServer]:
    server = AppServer(tmp_path_factory.mktemp("app"), workers=2, env=env_for_test_profiles()).prepare().start()
    yield server
    server.stop()


# --- sessions and the admin API (tests/sessions, tests/admin_api) --------------------


def bearer(session: dict[str, Any], *, token: str | None = None, user_id: str | None = None, session_id: str | None = None) -> dict[str, str]:
    """Test-client headers that present a session (G4), optionally altered."""
    return {
        "HTTP_AUTHORIZATION": f"Bearer {token or session['token']}",
        "HTTP_X_VERITTA_USER_ID": user_id or session["user_id"],
        "HTTP_X_VERITTA_SESSION_ID": session_id or session["session_id"],
    }


@pytest.fixture
def open_session(api: ApiClient) -> Callable[..., dict[str, Any]]:
    """Open a real session through POST /sessions; returns its JSON answer."""

    def open_(user_id: str = "u_12345", *, key: str = API_KEY, **fields: Any) -> dict[str, Any]:
        body = json.dumps({"user_id": user_id, **fields})
        response = api.post("/sessions", data=body, content_type="application/json", HTTP_X_API_KEY=key)
        assert response.status_code == 201, response.content
        return response.json()

    return open_


class AdminClient(Client):
    """The Django test client, sending X-ADMIN-KEY (unless key=None)."""

    def admin_get(self, path: str, *, key: str | None = ADMIN_KEY, **params: Any) -> Any:
        extra = {"HTTP_X_ADMIN_KEY": key} if key is not None else {}
        return self.get(path, data=params, **extra)

    def admin_post(self, path: str, payload: Any, *, key: str | None = ADMIN_KEY, **extra: Any) -> Any:
        if key is not None:
            extra["HTTP_X_ADMIN_KEY"] = key
        return self.post(path, data=json.dumps(payload), content_type="application/json", **extra)


@pytest.fixture
def admin(loaded_profiles: None, audit_log: Path) -> AdminClient:
    return AdminClient()


# --- the human console (tests/console) -----------------------------------------------

CONSOLE_PASSWORD = "console-test-password-0123"


@pytest.fixture
def console_user(db: None, settings: Any) -> Callable[..., Any]:
    """Factory: a console user (staff) with the given permissions ("app.codename")."""
    from django.contrib.auth.models import Permission, User

    # A fast hasher: PBKDF2's work factor would dominate these tests.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

    def make(username: str = "alice", *, superuser: bool = False, permissions: tuple[str, ...] = ()) -> Any:
        user = User.objects.create_user(username, password=CONSOLE_PASSWORD, is_staff=True, is_superuser=superuser)
        for name in permissions:
            app_label, codename = name.split(".")
            user.user_permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))
        return user

    return make


@pytest.fixture
def console(api: ApiClient, console_user: Callable[..., Any]) -> ApiClient:
    """A test client logged in to the console as a superuser (with a loaded database)."""
    client = ApiClient()
    client.force_login(console_user("root", superuser=True))
    return client
