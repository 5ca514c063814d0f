"""Settings for the test suite: the production settings module, with the
required variables given test values (never a developer's `.env`)."""

import os
import tempfile
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent
_TMP = Path(tempfile.mkdtemp(prefix="veritta-tests-"))

os.environ["VERITTA_ENV_FILE"] = ""
TEST_ENV = {
    "VERITTA_BETA_API_KEY": "test-beta-key-0123456789abcdef",
    "VERITTA_ADMIN_API_KEY": "test-admin-key-0123456789abcdef",
    # A fixed test key (base64 of 32 bytes); its public key is derived where needed.
    "VERITTA_AUDIT_SIGNING_KEY": "dGVzdC1zaWduaW5nLXNlZWQtMzItYnl0ZXMtbG9uZyE=",
    "DJANGO_SECRET_KEY": "test-secret-key-not-for-production-0123456789",
    "DJANGO_SECURE": "false",
    "DJANGO_ALLOWED_HOSTS": "testserver,localhost,127.0.0.1",
    "VERITTA_AUDIT_LOG_PATH": str(_TMP / "audit.log"),
    # Signs alert webhooks (base64 of 32 bytes); tests/operations' receiver checks it.
    # Seals held approval payloads (base64 of 32 bytes).
    "VERITTA_APPROVAL_KEY": "dGVzdC1hcHByb3ZhbC1rZXktMzItYnl0ZXMtbG9uZyE=",
    "VERITTA_ALERT_WEBHOOK_SECRET": "whsec_dGVzdC13ZWJob29rLXNlY3JldC0zMi1ieXRlcy1sb25n",
}
for _name, _value in TEST_ENV.items():
    os.environ.setdefault(_name, _value)

from governance.profiles import shipped_fingerprint  # noqa: E402

os.environ.setdefault("VERITTA_PROFILES_FINGERPRINT", shipped_fingerprint(_ROOT / "governance" / "profiles"))

from veritta_site.settings import *  # noqa: E402,F403
