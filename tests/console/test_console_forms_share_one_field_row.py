"""The console's forms (revoke, decide, roles) lay out their fields with one
shared row (templates/admin/form_field_row.html), so a change to how a field,
its errors and its help are shown reaches every form."""

from pathlib import Path
from typing import Any

from django.contrib.admin.utils import quote

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"
SHARED_ROW = TEMPLATES / "admin" / "form_field_row.html"


def test_no_console_template_lays_out_a_form_field_itself():
    assert SHARED_ROW.exists()
    own_rows = [
        str(path.relative_to(TEMPLATES))
        for path in sorted(TEMPLATES.rglob("*.html"))
        if path != SHARED_ROW and ".errors }}" in path.read_text()
    ]
    assert own_rows == []


def test_the_revoke_form_shows_its_reason_row(console: Any, open_session: Any) -> None:
    from sessions_app.models import Session

    open_session()
    # As the console links it: a session id "sess_22…" would otherwise reach the admin as 'sess_"…'.
    pk = quote(Session.objects.get().pk)
    page = console.get(f"/console/sessions_app/session/{pk}/revoke/").content.decode()
    assert '<label class="required" for="id_reason">Reason:</label>' in page
    assert '<div class="help">Recorded with the revocation and in the audit trail (at most 200 characters).</div>' in page
    refused = console.post(f"/console/sessions_app/session/{pk}/revoke/", {"post": "yes", "reason": ""}).content.decode()
    assert "errorlist" in refused and Session.objects.get().revoked_at is None


def test_the_decide_form_shows_its_verdict_and_reason_rows(console: Any, api: Any, test_profiles: Any) -> None:
    from governance.models import ApprovalRequest

    held = api.process({"action": "pay", "amount": 5000, "payee": "acme-corp-7731"})
    assert held.status_code == 202, held.content
    pk = ApprovalRequest.objects.get().pk
    page = console.get(f"/console/governance/approvalrequest/{pk}/decide/").content.decode()
    assert '<label class="required">Verdict:</label>' in page and 'name="verdict" value="approve"' in page
    assert '<label class="required" for="id_reason">Reason:</label>' in page
    assert '<div class="help">Mandatory; recorded with your decision in the audit trail.</div>' in page
