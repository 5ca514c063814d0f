"""A real Verittà app server for tests: gunicorn, several worker processes,
its own fresh database (a SQLite file, or a new database on the PostgreSQL
cluster the suite runs against), migrated and loaded the way an operator
does it, with the production settings module."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import psycopg
import requests

from tests.support.campaign import LEAKS
from tests.support.servers import free_port, wait_for_port

ROOT = Path(__file__).resolve().parents[2]


def fresh_database_url(tmp: Path) -> str:
    """A new, empty database of the kind this test run uses."""
    outer = os.environ.get("DATABASE_URL", "")
    if outer.startswith(("postgres://", "postgresql://")):
        name = f"vt_{uuid.uuid4().hex[:12]}"
        base, _, _ = outer.rpartition("/")
        with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return f"{base}/{name}"
    return f"sqlite:///{tmp / 'veritta.sqlite3'}"


def server_env(tmp: Path, database_url: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    from tests.settings import TEST_ENV

    env = {k: v for k, v in os.environ.items() if not k.startswith(("VERITTA_", "DJANGO_", "PYTEST_"))}
    env.update(TEST_ENV)
    env.update(
        DJANGO_SETTINGS_MODULE="veritta_site.settings",
        VERITTA_ENV_FILE="",
        VERITTA_PROFILES_FINGERPRINT=os.environ["VERITTA_PROFILES_FINGERPRINT"],
        DATABASE_URL=database_url,
        VERITTA_AUDIT_LOG_PATH=str(tmp / "audit.log"),
        PYTHONUNBUFFERED="1",
    )
    env.update(extra or {})
    return env


def observe_in_shell(tmp: Path, script: str) -> dict[str, Any]:
    """Run `script` in `manage.py shell` on a fresh, migrated database, as a
    server process would run the code it calls; the JSON object it prints last."""
    env = server_env(tmp, fresh_database_url(tmp))
    manage(env, "migrate", "--verbosity", "0")
    run = manage(env, "shell", "-c", script, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    observed: dict[str, Any] = json.loads(run.stdout.strip().splitlines()[-1])
    return observed


def manage(env: Mapping[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=dict(env),
        capture_output=True,
        text=True,
        check=check,
        timeout=300,
    )


class AppServer:
    def __init__(
        self,
        tmp: Path,
        *,
        workers: int = 2,
        threads: int = 1,
        env: Mapping[str, str] | None = None,
        database_url: str | None = None,
        task_worker: bool = False,
    ) -> None:
        tmp.mkdir(parents=True, exist_ok=True)
        self.tmp = tmp
        self.workers = workers
        self.threads = threads  # > 1: gunicorn's gthread workers, as docs/DEPLOYMENT.md recommends
        self.database_url = database_url or fresh_database_url(tmp)
        LEAKS.databases.append(self.database_url)  # scanned after the whole suite
        self.env = server_env(tmp, self.database_url, env)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        # The background worker (`manage.py db_worker`), as a deployment runs it next to gunicorn.
        self.task_worker = task_worker
        self.worker_process: subprocess.Popen[bytes] | None = None
        self.log_path = tmp / f"gunicorn-{self.port}.log"

    def prepare(self) -> AppServer:
        manage(self.env, "migrate", "--no-input", "-v0")
        manage(self.env, "governance", "load-profiles")
        # The console's CSS/JS, served by whitenoise (which indexes STATIC_ROOT at start).
        manage(self.env, "collectstatic", "--no-input", "-v0")
        return self

    def create_user(
        self, username: str, password: str, *, superuser: bool = False, permissions: tuple[str, ...] = ()
    ) -> None:
        """A console user: `createsuperuser` for a superuser (password from
        DJANGO_SUPERUSER_PASSWORD, as an operator does it), else a staff user
        with the given permissions ("app_label.codename")."""
        if superuser:
            env = {**self.env, "DJANGO_SUPERUSER_PASSWORD": password}
            manage(env, "createsuperuser", "--no-input", "--username", username, "--email", f"{username}@example.test")
            return
        code = (
            "import os; from django.contrib.auth.models import Permission, User; "
            "u = User.objects.create_user(os.environ['CONSOLE_USER'], password=os.environ['CONSOLE_PASSWORD'], is_staff=True); "
            "[u.user_permissions.add(Permission.objects.get(content_type__app_label=p.split('.')[0], codename=p.split('.')[1])) "
            "for p in os.environ['CONSOLE_PERMISSIONS'].split(',') if p]"
        )
        env = {
            **self.env,
            "CONSOLE_USER": username,
            "CONSOLE_PASSWORD": password,
            "CONSOLE_PERMISSIONS": ",".join(permissions),
        }
        manage(env, "shell", "--no-imports", "-c", code)

    def start(self) -> AppServer:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [
                sys.executable, "-m", "gunicorn", "veritta_site.wsgi:application",
                "--bind", f"127.0.0.1:{self.port}", "--workers", str(self.workers),
                *(["--worker-class", "gthread", "--threads", str(self.threads)] if self.threads > 1 else []),
                "--timeout", "60", "--graceful-timeout", "5",
            ],
            cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        if self.task_worker:
            self.worker_process = subprocess.Popen(
                [sys.executable, "manage.py", "db_worker", "--queue-name", "verify,approvals", "--interval", "0.2", "--no-startup-delay"],
                cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        try:
            wait_for_port("127.0.0.1", self.port, timeout=30)
            self._wait_until_serving()
        except Exception:  # noqa: BLE001 - any failure to start: stop and show the log
            self.stop()
            raise RuntimeError(f"gunicorn did not start:\n{self.log()}") from None
        return self

    def _wait_until_serving(self, timeout: float = 30) -> None:
        """The master binds the port before its workers boot: wait for an answer."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError("gunicorn exited")
            try:
                if requests.get(self.url + "/health", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise RuntimeError("gunicorn did not answer /health")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def worker_pids(self) -> list[int]:
        assert self.process is not None
        out = subprocess.run(["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True).stdout
        return [int(p) for p in out.split()]

    def stop(self) -> None:
        _terminate(self.worker_process)
        self.worker_process = None
        _terminate(self.process)
        self.process = None

    def manage(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return manage(self.env, *args, check=check)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return requests.post(self.url + path, timeout=30, **kwargs)

    def mirror_records(
        self, trace_id: str, *, until: Callable[[list[dict[str, Any]]], bool] = bool
    ) -> list[dict[str, Any]]:
        """The trace's records in the JSONL mirror, once `until` holds for them
        (by default: there is one), or 15 s have passed. On PostgreSQL an answer may carry a promise:
        the sequencer writes the mirror after it, within the max merge delay (4 s)."""
        deadline = time.monotonic() + 15
        while True:
            lines = (self.tmp / "audit.log").read_text().splitlines()
            found = [r for r in map(json.loads, lines) if r.get("trace_id") == trace_id]
            if until(found) or time.monotonic() > deadline:
                return found
            time.sleep(0.05)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return requests.get(self.url + path, timeout=30, **kwargs)


def _terminate(process: subprocess.Popen[bytes] | None) -> None:
    """SIGTERM, as a service manager stops it; SIGKILL after 15 s."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
