"""Verification runs off the request path: the console's button and
`audit verify --background` queue a run for the worker (`manage.py db_worker
--queue-name verify`, Django's tasks interface with the database backend),
which keeps its progress and verdict as a VerificationRun; `audit verify
--watch RUN` follows it. Through a real gunicorn server and a real worker
process; a tampered chain is judged FAILED and alerts; without a worker the
request still answers at once and the run waits, queued."""

from __future__ import annotations

import io
import re

import psycopg
import pytest
import requests
from django.core.management import call_command

from audit.models import VerificationRun
from audit.tasks import verification_run_start
from audit.triggers import create_sql, drop_sql
from audit.verification_runs import verification_run_execute
from conftest import API_KEY, CONSOLE_PASSWORD

QUEUED = re.compile(r"verification run (\d+) queued")


def queue_from_the_cli(server) -> int:
    out = server.manage("audit", "verify", "--background").stdout
    match = QUEUED.search(out)
    assert match, out
    return int(match.group(1))


def test_a_cli_run_is_done_by_the_worker_and_followed_to_its_verdict(start_app_server):
    server = start_app_server(task_worker=True)
    for text in ("one", "two"):
        assert server.post("/process", json={"action": "process", "text": text}, headers={"X-API-Key": API_KEY}).ok
    run_id = queue_from_the_cli(server)
    watched = server.manage("audit", "verify", "--watch", str(run_id), "--json")
    assert watched.returncode == 0
    assert '"ok": true' in watched.stdout and '"records": 6' in watched.stdout
    assert "done" in watched.stderr


def test_a_tampered_chain_is_judged_failed_in_the_background_and_alerts(start_app_server):
    server = start_app_server()
    assert server.post("/process", json={"action": "process", "text": "hi"}, headers={"X-API-Key": API_KEY}).ok
    # Tampered while the service is down (the attacker's own write lock must not
    # meet the worker's polling: db_worker exits when SQLite stays locked past
    # its busy timeout, and a service manager restarts it; docs/DEPLOYMENT.md).
    server.stop()
    tamper(server.database_url)
    server.task_worker = True
    server.start()
    run_id = queue_from_the_cli(server)
    watched = server.manage("audit", "verify", "--watch", str(run_id), check=False)
    assert watched.returncode == 1 and watched.stdout.startswith("FAILED")
    assert "content" in watched.stdout
    assert '"alert_kind": "verify_failed"' in server.log()


def test_the_console_button_answers_at_once_and_the_run_waits_for_a_worker(start_app_server):
    server = start_app_server()  # no worker: nothing may verify inside the request
    server.create_user("root", CONSOLE_PASSWORD, superuser=True)
    browser = requests.Session()
    login = browser.get(server.url + "/console/login/")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login.text).group(1)
    browser.post(
        server.url + "/console/login/",
        data={"csrfmiddlewaretoken": token, "username": "root", "password": CONSOLE_PASSWORD, "next": "/console/"},
        headers={"Referer": server.url + "/console/login/"},
    )
    chain = server.url + "/console/audit/auditrecord/chain/"
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', browser.get(chain).text).group(1)
    answer = browser.post(chain, data={"csrfmiddlewaretoken": token}, headers={"Referer": chain}, allow_redirects=False)
    assert answer.status_code == 302
    page = browser.get(chain).text
    assert 'id="verify-active"' in page and "queued" in page and "db_worker" in page
    assert 'http-equiv="refresh"' in page


# --- the worker's side, in process ---------------------------------------------------------


def test_a_run_delivered_twice_runs_once(api, audit_log):
    assert api.process({"action": "process", "text": "hi"}).status_code == 200
    run = verification_run_start(actor="test")
    first = verification_run_execute(run_id=run.pk)
    assert (first.status, first.ok, first.records) == (VerificationRun.DONE, True, 3)
    again = verification_run_execute(run_id=run.pk)
    assert again.finished_at == first.finished_at


def test_a_run_that_breaks_is_kept_as_broken_not_as_a_verdict(api, audit_log, settings, tmp_path):
    assert api.process({"action": "process", "text": "hi"}).status_code == 200
    run = verification_run_start(actor="test")
    settings.VERITTA_AUDIT_CHECKPOINT_DIR = tmp_path
    (tmp_path / "broken.note").mkdir()  # reading the external checkpoints fails
    with pytest.raises(OSError):
        verification_run_execute(run_id=run.pk)
    run.refresh_from_db()
    assert (run.status, run.ok, run.error) == (VerificationRun.FAILED, None, "IsADirectoryError")
    out = io.StringIO()
    with pytest.raises(Exception, match="broke"):
        call_command("audit", "verify", "--watch", str(run.pk), stdout=out)


def tamper(database_url: str) -> None:
    """As an attacker with database access: triggers dropped, one record edited,
    triggers put back (the server would not start without them)."""
    edit = "UPDATE audit_auditrecord SET body = replace(body, '\"ALLOW\"', '\"DENY\"') WHERE seq = 1"
    if database_url.startswith("sqlite"):
        import sqlite3

        db = sqlite3.connect(database_url.removeprefix("sqlite:///"))
        with db:
            for statement in [*drop_sql("sqlite"), edit, *create_sql("sqlite")]:
                db.execute(statement)
        db.close()
        return
    with psycopg.connect(database_url, autocommit=True) as db:
        for statement in [*drop_sql("postgresql"), edit, *create_sql("postgresql")]:
            db.execute(statement)
