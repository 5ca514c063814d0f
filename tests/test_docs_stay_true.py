"""Documentation that is generated from code must match the code."""

from __future__ import annotations

import re
from pathlib import Path

from veritta_site.errors import CATALOGUE, catalogue_markdown

ROOT = Path(__file__).resolve().parent.parent


def test_error_envelope_doc_lists_the_whole_catalogue():
    text = (ROOT / "docs" / "ERROR_ENVELOPE.md").read_text()
    table = re.search(r"<!-- catalogue:start -->\n(.*)\n<!-- catalogue:end -->", text, re.S)
    assert table, "catalogue markers missing"
    assert table.group(1).strip() == catalogue_markdown(), "run: python manage.py governance reason-codes"


def test_every_reason_code_raised_in_the_code_is_catalogued():
    raised = set()
    for path in ROOT.glob("*/*.py"):
        if path.parts[-2] in ("tests", ".venv", "bench"):
            continue
        raised |= set(re.findall(r'VerittaError\(\s*"([A-Z_]+)"', path.read_text()))
    assert raised and raised <= set(CATALOGUE), raised - set(CATALOGUE)


def test_openapi_document_lists_the_catalogue(client):
    schema = client.get("/api/schema/?format=json").json()
    codes = schema["components"]["schemas"]["ReasonCodesEnum"]["enum"]
    assert set(codes) == {c for c, r in CATALOGUE.items() if r.status}


def test_env_example_names_every_setting_of_the_spec():
    example = (ROOT / ".env.example").read_text()
    for name in re.findall(r"^\| `([A-Z_]+)` \|", (ROOT / "docs" / "CONFIGURATION.md").read_text(), re.M):
        assert name in example, name


def test_example_profile_sets_carry_the_shipped_admin_profile():
    # An example set replaces the whole profile directory (VERITTA_PROFILES_DIR), so
    # it must carry the admin profile the code records under, byte for byte.
    shipped = (ROOT / "governance" / "profiles" / "admin.json").read_text()
    copies = sorted((ROOT / "docs" / "examples").glob("*/profiles/admin.json"))
    assert len(copies) >= 2
    assert [p for p in copies if p.read_text() != shipped] == []
