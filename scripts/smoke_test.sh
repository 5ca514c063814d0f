#!/usr/bin/env bash
# Smoke test of a Verittà deployment (docs/RUNBOOK.md, part 2).
#
#   scripts/smoke_test.sh https://veritta.internal    # a running service
#   scripts/smoke_test.sh                             # start one here (this checkout's
#                                                     # settings and database), test, stop it
#
# Needs VERITTA_BETA_API_KEY and VERITTA_ADMIN_API_KEY in the environment (or in
# ./.env), curl and jq. Runs the runbook's smoke calls and checks, by trace
# id, that the audit trail recorded each of them; prints "SMOKE OK" or fails
# with the check that did not hold. Leaves only audit records behind.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PYTHON=${PYTHON:-.venv/bin/python}
[ -x "$PYTHON" ] || PYTHON=python3
if [ -f .env ] && [ -z "${VERITTA_ENV_FILE+x}" ]; then set -a; . ./.env; set +a; fi
: "${VERITTA_BETA_API_KEY:?set VERITTA_BETA_API_KEY}"
: "${VERITTA_ADMIN_API_KEY:?set VERITTA_ADMIN_API_KEY}"
for tool in curl jq; do command -v $tool >/dev/null || { echo "smoke: $tool is required" >&2; exit 2; }; done

say() { printf 'smoke: %s\n' "$*" >&2; }
fail() { say "FAILED: $*"; exit 1; }
uuid() { "$PYTHON" -c 'import uuid; print(uuid.uuid4())'; }

URL=${1:-${VERITTA_URL:-}}
SERVER_PID=
stop_server() { if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi; }
trap stop_server EXIT

if [ -z "$URL" ]; then
  PORT=$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  URL="http://127.0.0.1:$PORT"
  say "starting a server at $URL"
  "$PYTHON" manage.py migrate --no-input -v0
  "$PYTHON" manage.py governance load-profiles >/dev/null
  "$PYTHON" -m gunicorn veritta_site.wsgi:application -c gunicorn.conf.py --bind "127.0.0.1:$PORT" --workers 2 \
    >"${SMOKE_SERVER_LOG:-/dev/null}" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 1 150); do curl -fsS "$URL/health" >/dev/null 2>&1 && break; sleep 0.2; done
fi
URL=${URL%/}

# 1. Liveness, and the admin health check (database, audit sink).
curl -fsS "$URL/health" >/dev/null || fail "GET /health"
health=$(curl -sS -H "X-ADMIN-KEY: $VERITTA_ADMIN_API_KEY" "$URL/admin/health")
[ "$(jq -r .status <<<"$health")" = ok ] || fail "GET /admin/health: $health"
say "health ok"

# 2. The runbook's smoke call (X-API-Key). Our own id is recorded as the
# parent; the server owns the trace id and returns it.
CLIENT_ID=$(uuid)
answer=$(curl -sS -X POST "$URL/process" \
  -H "X-API-Key: $VERITTA_BETA_API_KEY" \
  -H "X-TRACE-ID: $CLIENT_ID" \
  -d '{"action":"process","event_type":"test_event","text":"Hello World"}')
[ "$(jq -r .status_code <<<"$answer")" = 200 ] || fail "POST /process: $answer"
TRACE_ID=$(jq -r .trace_id <<<"$answer")
[ "$TRACE_ID" != "$CLIENT_ID" ] || fail "the server adopted the client's trace id"

# 3. The audit trail has its records: ALLOW, PENDING, SUCCESS, and the receipt matches.
trail=$(curl -sS -H "X-ADMIN-KEY: $VERITTA_ADMIN_API_KEY" "$URL/admin/audit/traces/$TRACE_ID")
outcomes=$(jq -r '[.records[] | (.decision // .status)] | join(",")' <<<"$trail")
[ "$outcomes" = "ALLOW,PENDING,SUCCESS" ] || fail "trace $TRACE_ID has records $outcomes"
receipt=$(jq -r .audit.record_hash <<<"$answer")
jq -e --arg h "$receipt" '[.records[].record_hash] | index($h) != null' <<<"$trail" >/dev/null ||
  fail "the receipt's record_hash is not in the trail"
say "allowed call audited: $TRACE_ID"

# 4. A denied call (no key) is refused in the envelope, and audited as DENY.
denied=$(curl -sS -X POST "$URL/process" -d '{"action":"process"}')
[ "$(jq -r '.reason_codes[0]' <<<"$denied")" = MISSING_API_KEY ] || fail "missing key: $denied"
DENY_TRACE=$(jq -r .trace_id <<<"$denied")
trail=$(curl -sS -H "X-ADMIN-KEY: $VERITTA_ADMIN_API_KEY" "$URL/admin/audit/traces/$DENY_TRACE")
[ "$(jq -r '[.records[].decision] | join(",")' <<<"$trail")" = DENY ] || fail "denied call not audited: $trail"
say "denied call audited: $DENY_TRACE"

# 5. Metrics answer, and count decisions.
# Read the whole answer first: `curl | grep -q` fails under pipefail when grep
# stops reading early and curl cannot write the rest (curl exit 23).
metrics=$(curl -fsS -H "X-ADMIN-KEY: $VERITTA_ADMIN_API_KEY" "$URL/metrics") || fail "GET /metrics failed"
grep -q '^veritta_decisions_total{' <<<"$metrics" || fail "GET /metrics has no veritta_decisions_total"
say "metrics ok"

# 6. On the service's own machine: the JSONL mirror and the chain.
if [ -z "${1:-${VERITTA_URL:-}}" ] || [ "${SMOKE_LOCAL_CHECKS:-}" = 1 ]; then
  LOG=${VERITTA_AUDIT_LOG_PATH:-audit.log}
  [ "$(grep -c "$TRACE_ID" "$LOG")" = 3 ] || fail "$LOG does not hold the 3 records of $TRACE_ID"
  "$PYTHON" manage.py audit trace "$TRACE_ID" >/dev/null || fail "audit trace $TRACE_ID"
  "$PYTHON" manage.py audit verify >/dev/null || fail "audit verify"
  say "mirror and chain ok"
fi
echo "SMOKE OK"
