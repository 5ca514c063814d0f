"""audit.alerts counts in sessions_app's G10 store through a registered counter (docs/ARCHITECTURE.md "Layers")."""

import pytest

from audit import alerts
from audit.hooks import HookMissing
from sessions_app.ratelimit import minute_count


def test_sessions_app_registers_its_store_as_the_alert_counter():
    assert alerts.minute_counter.provided() is minute_count


def test_without_a_counter_an_alert_count_raises_rather_than_being_lost(monkeypatch):
    monkeypatch.setattr(alerts.minute_counter, "_provided", None)
    with pytest.raises(HookMissing):
        alerts.rate_limited_observed()
