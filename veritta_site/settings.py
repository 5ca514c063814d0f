"""Settings for Verittà, read from the environment (and a local `.env`) with django-environ.

Required values are read as empty strings here and refused by system checks
(`veritta_site/checks.py`), so `manage.py check` and every server start fail with
a message that names the missing variable instead of a bare KeyError.
"""

import os
from pathlib import Path

import environ
from django.core.management.utils import get_random_secret_key

from veritta_site.timestamps import DRF_DATETIME_FORMAT

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
# A development `.env` (written by scripts/run) is read when present; real
# environment variables always win over it. VERITTA_ENV_FILE="" reads none.
ENV_FILE = os.environ.get("VERITTA_ENV_FILE", str(BASE_DIR / ".env"))
if ENV_FILE and Path(ENV_FILE).is_file():
    environ.Env.read_env(ENV_FILE, overwrite=False)

DEBUG = env.bool("DJANGO_DEBUG", default=False)
SECURE = env.bool("DJANGO_SECURE", default=not DEBUG)

# Production must set DJANGO_SECRET_KEY (a system check says so); development
# gets a fresh random key per process, which only invalidates console logins.
SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="") or get_random_secret_key()
SECRET_KEY_FROM_ENV = bool(env.str("DJANGO_SECRET_KEY", default=""))

ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1"])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "django_tasks",
    "django_tasks_db",
    "corsheaders",
    "governance",
    "audit",
    "sessions_app",
]

# Background work (a whole-chain verify, started from the console or `audit
# verify --background`) runs in `manage.py db_worker --queue-name verify`, a
# separate process fed through the database (docs/DEPLOYMENT.md "Background work").
TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": ["verify", "approvals"]}}

MIDDLEWARE = [
    # First, so that every response (errors included) carries the trace id.
    "veritta_site.middleware.TraceIdMiddleware",
    "veritta_site.middleware.ErrorEnvelopeMiddleware",
    # Request durations for /metrics, by route (audit/metrics.py).
    "audit.metrics.RequestMetricsMiddleware",
    # CORS for the API paths named below (VERITTA_CORS_ORIGINS); answers a
    # preflight itself, before the HTTPS redirect and the CSRF check.
    "corsheaders.middleware.CorsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # The console's static files (the admin's CSS and JS), served by the app
    # itself under gunicorn with DEBUG off; `collectstatic` fills STATIC_ROOT.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "sessions_app.console_security.SecurityHeadersMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "veritta_site.urls"
WSGI_APPLICATION = "veritta_site.wsgi.application"
APPEND_SLASH = False

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'veritta.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Django's SQLite backend, with writers queued on an OS lock instead of
    # SQLite's sleeping busy handler (veritta_site/sqlite_queued).
    DATABASES["default"]["ENGINE"] = "veritta_site.sqlite_queued"
    DATABASES["default"]["OPTIONS"] = {
        # Every transaction takes the write lock at BEGIN: the audit chain head
        # is read under that lock, so concurrent writers can never fork it.
        "transaction_mode": "IMMEDIATE",
        # Seconds a writer waits for the lock before the audit sink fails closed.
        "timeout": env.float("VERITTA_SQLITE_LOCK_TIMEOUT_S", default=5.0),
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;",
    }
else:
    # A writer that waits this long for a lock (the chain lock included) gives
    # up, and the request fails closed with 503 AUDIT_SINK_FAILED.
    _lock_ms = int(env.float("VERITTA_DB_LOCK_TIMEOUT_S", default=5.0) * 1000)
    DATABASES["default"].setdefault("OPTIONS", {})["options"] = f"-c lock_timeout={_lock_ms}"

# Persistent connections on both databases: opening one per request (and, on
# SQLite, running its init_command) cost a fifth of a request (docs/PERFORMANCE.md).
# Health checks drop a connection that died in between instead of failing a request.
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env.str("DJANGO_STATIC_ROOT", default=str(BASE_DIR / "var" / "static")))

# --- HTTPS and cookies: on unless DJANGO_SECURE=false (plain HTTP on loopback) ---
SECURE_SSL_REDIRECT = SECURE
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if SECURE else None
SESSION_COOKIE_SECURE = SECURE
CSRF_COOKIE_SECURE = SECURE
SECURE_HSTS_SECONDS = 31536000 if SECURE else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = SECURE
SECURE_HSTS_PRELOAD = SECURE
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

# --- Django REST framework: no implicit authentication; gates do it ---
REST_FRAMEWORK = {
    # Datetimes as the audit records write them (veritta_site/timestamps.py), not DRF's "…Z".
    "DATETIME_FORMAT": DRF_DATETIME_FORMAT,
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": [],
    "UNAUTHENTICATED_USER": None,
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "EXCEPTION_HANDLER": "veritta_site.errors.drf_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Verittà governed runtime API",
    "DESCRIPTION": "Every action is authorized by fail-closed gates, run by a versioned executor "
    "and written to a tamper-evident audit trail. Errors use one envelope; see docs/ERROR_ENVELOPE.md.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "veritta_site.schema.strict_request_bodies",
    ],
}

# --- Verittà (SPEC §2) ---
VERITTA_BETA_API_KEY = env.str("VERITTA_BETA_API_KEY", default="")
# Roles of that bootstrap key (comma-separated; docs/AUTHORIZATION.md). Default
# `operator`: a named role, not a wildcard, so a profile with role rules gives
# the bootstrap key only what it grants `operator`.
VERITTA_BOOTSTRAP_KEY_ROLES = env.str("VERITTA_BOOTSTRAP_KEY_ROLES", default="operator")
VERITTA_PROFILES_FINGERPRINT = env.str("VERITTA_PROFILES_FINGERPRINT", default="")
VERITTA_ADMIN_API_KEY = env.str("VERITTA_ADMIN_API_KEY", default="")
# The admin key being rotated out: accepted too until removed (docs/DEPLOYMENT.md).
VERITTA_ADMIN_API_KEY_PREVIOUS = env.str("VERITTA_ADMIN_API_KEY_PREVIOUS", default="")
VERITTA_AUDIT_SIGNING_KEY = env.str("VERITTA_AUDIT_SIGNING_KEY", default="")
VERITTA_AUDIT_LOG_PATH = Path(env.str("VERITTA_AUDIT_LOG_PATH", default=str(BASE_DIR / "audit.log")))
VERITTA_AUDIT_CHECKPOINT_DIR = Path(
    env.str("VERITTA_AUDIT_CHECKPOINT_DIR", default="") or VERITTA_AUDIT_LOG_PATH.parent / "checkpoints"
)
VERITTA_AUDIT_CHECKPOINT_EVERY = env.int("VERITTA_AUDIT_CHECKPOINT_EVERY", default=1000)
# /admin/health: a record unsealed by any checkpoint for longer fails the check
# (run `audit checkpoint` from a timer well inside it), and the mirror's disk needs this much room.
VERITTA_AUDIT_CHECKPOINT_MAX_AGE_S = env.float("VERITTA_AUDIT_CHECKPOINT_MAX_AGE_S", default=3600.0)
VERITTA_AUDIT_SINK_MIN_FREE_MB = env.int("VERITTA_AUDIT_SINK_MIN_FREE_MB", default=256)
# The ring of checkpoint verifier keys with the sizes each signed (audit/keyring.py);
# default: keyring.json in the checkpoint directory. Absent: the signing key alone.
VERITTA_AUDIT_KEYRING_FILE = env.str("VERITTA_AUDIT_KEYRING_FILE", default="")
VERITTA_AUDIT_ORIGIN = env.str("VERITTA_AUDIT_ORIGIN", default="veritta.local/audit")
# The witnesses whose cosignatures this log accepts and asks for (issue 15,
# docs/VERIFYING.md): their tlog-cosignature verifier keys, comma-separated.
VERITTA_AUDIT_WITNESSES = env.list("VERITTA_AUDIT_WITNESSES", default=[])
# PostgreSQL's batched write path (audit/chain.py): how long a record may wait
# in the intake before it must be in the chain (the deadline of an inclusion
# promise; new writes are refused at half of it), and how often every server
# process looks for waiting records.
VERITTA_AUDIT_MAX_MERGE_DELAY_S = env.float("VERITTA_AUDIT_MAX_MERGE_DELAY_S", default=4.0)
VERITTA_AUDIT_SEQUENCER_INTERVAL_S = env.float("VERITTA_AUDIT_SEQUENCER_INTERVAL_S", default=0.5)
# The writes that request threads of one process make at the same moment share
# one transaction and one commit (audit/group_commit.py); off, each commits alone.
VERITTA_AUDIT_GROUP_COMMIT = env.bool("VERITTA_AUDIT_GROUP_COMMIT", default=True)
VERITTA_AUDIT_DIGEST_ENABLED = env.bool("VERITTA_AUDIT_DIGEST_ENABLED", default=True)
VERITTA_MAX_PAYLOAD_SIZE = env.int("VERITTA_MAX_PAYLOAD_SIZE", default=8192)
VERITTA_EXECUTOR_TIMEOUT_S = env.float("VERITTA_EXECUTOR_TIMEOUT_S", default=10.0)
VERITTA_RATE_LIMIT_KEY_PER_MIN = env.int("VERITTA_RATE_LIMIT_KEY_PER_MIN", default=1000)
VERITTA_RATE_LIMIT_SESSION_PER_MIN = env.int("VERITTA_RATE_LIMIT_SESSION_PER_MIN", default=100)
VERITTA_ADMIN_RATE_LIMIT_PER_MIN = env.int("VERITTA_ADMIN_RATE_LIMIT_PER_MIN", default=100)
VERITTA_RATE_LIMIT_ADDRESS_PER_MIN = env.int("VERITTA_RATE_LIMIT_ADDRESS_PER_MIN", default=6000)
VERITTA_RATE_LIMIT_URL = env.str("VERITTA_RATE_LIMIT_URL", default="")
# Behind a proxy or load balancer: the proxies' networks (CIDRs) whose forwarding
# header names the client, how many of them stand in front of the app, and which
# header they set (veritta_site/proxies.py). Empty: REMOTE_ADDR is the client.
VERITTA_TRUSTED_PROXIES = env.list("VERITTA_TRUSTED_PROXIES", default=[])
VERITTA_TRUSTED_PROXY_HOPS = env.int("VERITTA_TRUSTED_PROXY_HOPS", default=1)
VERITTA_TRUSTED_PROXY_HEADER = env.str("VERITTA_TRUSTED_PROXY_HEADER", default="X-Forwarded-For")
# Sessions opened by POST /sessions: default and longest lifetime, in seconds.
VERITTA_SESSION_TTL_S = env.int("VERITTA_SESSION_TTL_S", default=3600)
VERITTA_SESSION_TTL_MAX_S = env.int("VERITTA_SESSION_TTL_MAX_S", default=86400)
VERITTA_CORS_ORIGINS = env.list("VERITTA_CORS_ORIGINS", default=[])
# Browser origins ("https://host[:port]", exact) that may call the client API;
# empty: no CORS header at all. django-cors-headers refuses a malformed origin
# at start (corsheaders.E013). Never the console or the admin API.
CORS_ALLOWED_ORIGINS = VERITTA_CORS_ORIGINS
CORS_URLS_REGEX = r"^/(process|sessions|health)$"
CORS_ALLOW_CREDENTIALS = False  # credentials are headers, never cookies
CORS_ALLOW_METHODS = ("GET", "POST", "OPTIONS")
CORS_ALLOW_HEADERS = (
    "accept",
    "authorization",
    "content-type",
    "idempotency-key",
    "traceparent",
    "x-api-key",
    "x-trace-id",
    "x-veritta-session-id",
    "x-veritta-user-id",
)
CORS_EXPOSE_HEADERS = ("X-Trace-ID", "Idempotent-Replayed", "Retry-After")
# How long a /process Idempotency-Key is remembered (Stripe keeps keys 24 h).
VERITTA_IDEMPOTENCY_WINDOW_S = env.int("VERITTA_IDEMPOTENCY_WINDOW_S", default=86400)
VERITTA_ALERT_WEBHOOK_URL = env.str("VERITTA_ALERT_WEBHOOK_URL", default="")
# Seals the payloads of requests held for four-eyes approval (docs/APPROVALS.md):
# base64 of 32 random bytes (AES-256-GCM). Required once a profile asks for approval.
VERITTA_APPROVAL_KEY = env.str("VERITTA_APPROVAL_KEY", default="")
# How long an executed held request's sealed answer is kept for GET /approvals/{id};
# then `governance expire-approvals` (and the approvals worker) deletes it, recorded.
VERITTA_APPROVAL_ANSWER_RETENTION_S = env.int("VERITTA_APPROVAL_ANSWER_RETENTION_S", default=604800)
# Signs each webhook POST (Standard Webhooks, HMAC-SHA256): "whsec_" + base64 of 24-64 random bytes.
VERITTA_ALERT_WEBHOOK_SECRET = env.str("VERITTA_ALERT_WEBHOOK_SECRET", default="")
# Console logins: this many failures per username or per client address within
# the window refuse further attempts until the window has passed (sessions_app/console_security.py).
VERITTA_CONSOLE_LOGIN_MAX_FAILURES = env.int("VERITTA_CONSOLE_LOGIN_MAX_FAILURES", default=5)
VERITTA_CONSOLE_LOGIN_WINDOW_S = env.int("VERITTA_CONSOLE_LOGIN_WINDOW_S", default=900)

# --- SLOs, alerts and metrics (docs/OPERATIONS.md) ---
# `audit slo` checks each objective over the last VERITTA_SLO_WINDOW_HOURS.
VERITTA_SLO_WINDOW_HOURS = env.float("VERITTA_SLO_WINDOW_HOURS", default=24.0)
VERITTA_SLO_LATENCY_P95_MS = env.float("VERITTA_SLO_LATENCY_P95_MS", default=1000.0)
VERITTA_SLO_LATENCY_P99_MS = env.float("VERITTA_SLO_LATENCY_P99_MS", default=5000.0)
VERITTA_SLO_TRACE_COMPLETENESS = env.float("VERITTA_SLO_TRACE_COMPLETENESS", default=1.0)
VERITTA_SLO_SECURITY_VIOLATION_RATE = env.float("VERITTA_SLO_SECURITY_VIOLATION_RATE", default=0.05)
# ... judged only over at least this many decisions in the window.
VERITTA_SLO_SECURITY_MIN_DECISIONS = env.int("VERITTA_SLO_SECURITY_MIN_DECISIONS", default=100)
# Decision correctness: the newest this-many re-decidable /process decisions of
# the window, re-evaluated against their profile version (audit/correctness.py).
VERITTA_SLO_DECISION_CORRECTNESS = env.float("VERITTA_SLO_DECISION_CORRECTNESS", default=1.0)
VERITTA_SLO_CORRECTNESS_SAMPLE = env.int("VERITTA_SLO_CORRECTNESS_SAMPLE", default=200)
# An incident: this many authentication failures from one client address
# digest (or one key) within one minute.
VERITTA_ALERT_AUTHN_FAILURES_PER_MIN = env.int("VERITTA_ALERT_AUTHN_FAILURES_PER_MIN", default=20)
# A spike: this many RATE_LIMIT_EXCEEDED denials (service-wide), or executor
# timeouts of one action, within one minute (0: no such alert).
VERITTA_ALERT_RATE_LIMITED_PER_MIN = env.int("VERITTA_ALERT_RATE_LIMITED_PER_MIN", default=100)
VERITTA_ALERT_EXECUTOR_TIMEOUTS_PER_MIN = env.int("VERITTA_ALERT_EXECUTOR_TIMEOUTS_PER_MIN", default=5)
# One alert per (kind, subject) per this many seconds, across all workers.
VERITTA_ALERT_DEDUP_S = env.int("VERITTA_ALERT_DEDUP_S", default=300)
VERITTA_ALERT_WEBHOOK_TIMEOUT_S = env.float("VERITTA_ALERT_WEBHOOK_TIMEOUT_S", default=2.0)
VERITTA_ALERT_WEBHOOK_ATTEMPTS = env.int("VERITTA_ALERT_WEBHOOK_ATTEMPTS", default=3)
# sha256 (hex) of the read-only /metrics scrape token Prometheus sends as a
# bearer token (audit/scrape.py); empty: /metrics takes the admin key only.
VERITTA_METRICS_TOKEN_SHA256 = env.str("VERITTA_METRICS_TOKEN_SHA256", default="")
# The trace-completeness gauge of /metrics looks at PENDING records this recent.
VERITTA_METRICS_COMPLETENESS_WINDOW_S = env.int("VERITTA_METRICS_COMPLETENESS_WINDOW_S", default=3600)

# Policy profiles shipped in the repo, and the one /process enforces.
VERITTA_PROFILES_DIR = Path(env.str("VERITTA_PROFILES_DIR", default=str(BASE_DIR / "governance" / "profiles")))
# Connector files http_call_v1 may call (docs/CONNECTORS.md); profiles pin them by hash.
VERITTA_CONNECTORS_DIR = Path(env.str("VERITTA_CONNECTORS_DIR", default=str(BASE_DIR / "governance" / "connectors")))
VERITTA_POLICY_PROFILE = env.str("VERITTA_POLICY_PROFILE", default="default")
# Every worker re-reads the active profiles at most this many seconds apart: the
# bound within which `governance load-profiles` reaches every server (docs/POLICY_CHANGES.md).
VERITTA_PROFILES_RECHECK_S = env.float("VERITTA_PROFILES_RECHECK_S", default=2.0)

# Executors, by dotted path: add your own here (or in VERITTA_EXTRA_EXECUTORS)
# without touching the pipeline.
VERITTA_EXECUTORS = [
    "governance.executors.NoopExecutor",
    "governance.executors.TextProcessExecutor",
    "governance.http_call.HttpCallExecutor",
    *env.list("VERITTA_EXTRA_EXECUTORS", default=[]),
]

LOG_LEVEL = env.str("LOG_LEVEL", default="INFO").upper()
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "veritta_site.logging.JsonFormatter"}},
    "filters": {"trace": {"()": "veritta_site.logging.TraceIdFilter"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "json", "filters": ["trace"]},
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        # Django logs the request line of 4xx/5xx answers; it holds no body,
        # but keep it at WARNING so 404 probes don't flood the log.
        "django.request": {"level": "ERROR"},
        # http_call_v1's client logs each request line at DEBUG, and a path
        # holds payload values: never below WARNING, whatever LOG_LEVEL says.
        "urllib3": {"level": "WARNING"},
    },
}
