"""Every line a real gunicorn server writes (its own error log, the access log,
Django's loggers) is one JSON object; the lines of a request carry its trace id."""

from __future__ import annotations

import json

import requests


def test_every_server_log_line_is_json_and_request_lines_carry_the_trace_id(start_app_server):
    server = start_app_server(workers=2, env={"VERITTA_ALERT_AUTHN_FAILURES_PER_MIN": "1"})
    # A failed credential at threshold 1 raises an incident, which Django's
    # `veritta.alerts` logger reports while serving the request.
    response = requests.post(server.url + "/process", json={"action": "process"}, timeout=30)
    assert response.status_code == 403
    trace_id = response.headers["X-Trace-ID"]
    server.stop()

    lines = [line for line in server.log().splitlines() if line.strip()]
    parsed = []
    for line in lines:
        try:
            parsed.append(json.loads(line))
        except ValueError:
            raise AssertionError(f"not a JSON log line: {line!r}") from None
    loggers = {p.get("logger") for p in parsed}
    assert {"gunicorn.error", "gunicorn.access", "veritta.alerts"} <= loggers, loggers
    access = [p for p in parsed if p["logger"] == "gunicorn.access" and p["path"] == "/process"]
    assert [p["trace_id"] for p in access] == [trace_id]
    alert = [p for p in parsed if p["logger"] == "veritta.alerts"]
    assert alert and all(p["trace_id"] == trace_id for p in alert)
