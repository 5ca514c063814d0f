"""The shipped Prometheus alert rules (docs/operations/prometheus/) stay true:
promtool accepts them, every SLO of `audit slo` has its rule, every metric
they read is one a real server exposes, and the rules fire on the inputs
that breach their SLO and stay quiet otherwise (`promtool test rules`)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import yaml

from conftest import ADMIN_KEY, API_KEY

RULES = Path(__file__).resolve().parents[2] / "docs" / "operations" / "prometheus" / "veritta-slo.rules.yml"


def _promtool() -> str:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: apt-get install prometheus (scripts/test installs it)"
    return promtool


def _rules() -> list[dict]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def _slo_rule(slo: str) -> dict:
    (rule,) = [r for r in _rules() if r.get("labels", {}).get("slo") == slo]
    return rule


def test_promtool_accepts_the_rules():
    result = subprocess.run([_promtool(), "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_slo_has_exactly_one_rule(api):
    from audit.reports import Objectives, audit_slo

    names = {r.name for r in audit_slo(objectives=Objectives.from_settings()).results}
    ruled = [r["labels"]["slo"] for r in _rules() if "slo" in r.get("labels", {})]
    assert sorted(ruled) == sorted(names)


def test_the_security_rule_counts_the_security_codes():
    from audit.reports import SECURITY_CODES

    codes = re.search(r'reason_code=~"([A-Z_|]+)"', _slo_rule("security_violation_rate")["expr"])
    assert codes and set(codes.group(1).split("|")) == set(SECURITY_CODES)


def test_every_metric_the_rules_read_is_exposed(app_server):
    assert app_server.post("/process", json={"action": "test_action"}, headers={"X-API-Key": API_KEY}).status_code == 200
    exposed = app_server.get("/metrics", headers={"X-ADMIN-KEY": ADMIN_KEY}).text
    samples = set(re.findall(r"^(veritta_\w+)[{ ]", exposed, re.M))
    for rule in _rules():
        for name in re.findall(r"\b(veritta_\w+)", rule["expr"]):
            assert name in samples, (rule["alert"], name)


def _fires(tmp_path: Path, rule: dict, series: list[dict], *, at: str) -> bool:
    """Whether the rule's expression has a result at `at` on these input
    series, by `promtool test rules` (an empty result is asserted first; if
    that test passes, the expression is quiet)."""
    rules_file = tmp_path / "rule.yml"
    rules_file.write_text(yaml.safe_dump({"groups": [{"name": "one", "rules": [{"record": "under_test", "expr": rule["expr"]}]}]}))
    test_file = tmp_path / "test.yml"
    test = {
        "rule_files": [str(rules_file)],
        "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": series, "promql_expr_test": [{"expr": "under_test", "eval_time": at, "exp_samples": []}]}],
    }
    test_file.write_text(yaml.safe_dump(test))
    result = subprocess.run([_promtool(), "test", "rules", str(test_file)], capture_output=True, text=True, timeout=60)
    if result.returncode == 0:
        return False
    output = result.stdout + result.stderr
    assert "got:" in output, output  # failed for the samples it got, not for a broken test
    return True


def test_the_security_rule_fires_on_a_breach_only(tmp_path):
    rule = _slo_rule("security_violation_rate")

    def decisions(denied_per_min: int) -> list[dict]:
        return [
            {"series": 'veritta_decisions_total{decision="ALLOW",gate="ALL",reason_code=""}', "values": "0+10x120"},
            {"series": 'veritta_decisions_total{decision="DENY",gate="G2",reason_code="GATE_DENIED_INVALID_API_KEY"}',
             "values": f"0+{denied_per_min}x120"},
            # Denials that are no security violation, to be left out of the numerator.
            {"series": 'veritta_decisions_total{decision="DENY",gate="G10",reason_code="RATE_LIMIT_EXCEEDED"}', "values": "0+10x120"},
        ]  # fmt: skip

    assert _fires(tmp_path, rule, decisions(5), at="90m")  # 5 / 25 = 20% > 5%
    assert not _fires(tmp_path, rule, decisions(0), at="90m")


def test_the_correctness_and_completeness_rules_fire_below_one(tmp_path):
    for slo, metric in (("decision_correctness", "veritta_decision_correctness_ratio"), ("trace_completeness", "veritta_trace_completeness_ratio")):
        rule = _slo_rule(slo)
        assert _fires(tmp_path, rule, [{"series": metric, "values": "1 1 0.5 0.5"}], at="3m"), slo
        assert not _fires(tmp_path, rule, [{"series": metric, "values": "1 1 1 1"}], at="3m"), slo
