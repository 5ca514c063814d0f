"""Seed 002 gap 10, "routing exception suppression": an exception raised while
the registry gate routes an action must deny with GATE_EXCEPTION, the gate
`registry` and the exception's own class, in the decision record, the BLOCKED
action record and the answer; never one generic code that hides which
exception it was.

The check is run against the real pipeline with a deliberately broken
executor registered through settings (its `actions` raise), and then against
two deliberately broken registry gates that suppress the exception the way
the seed's code did: there the same check must fail."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from governance.executors import ActionRequest, Executor
from governance.gates import executor_for as _real_executor_for
from veritta_site.errors import VerittaError


class _RaisingActions:
    """An `actions` set whose membership test raises: routing itself fails."""

    def __init__(self, exc: type[Exception]) -> None:
        self.exc = exc

    def __contains__(self, action: object) -> bool:
        raise self.exc("routing failed")


class _BrokenNoop(Executor):
    executor_id = "noop_v1"  # what the shipped profile routes `test_action` to
    version = "1.0.0"

    def execute(self, request: ActionRequest) -> dict[str, Any]:
        raise AssertionError("a broken route must never execute")


class BrokenRoutingLookup(_BrokenNoop):
    actions = _RaisingActions(LookupError)  # type: ignore[assignment]


class BrokenRoutingArithmetic(_BrokenNoop):
    actions = _RaisingActions(ArithmeticError)  # type: ignore[assignment]


@pytest.fixture
def broken_registry(settings: Any) -> Iterator[Any]:
    """Registers one of the broken executors in place of the shipped noop."""
    from governance.registry import executor_registry

    def register(cls: type[Executor]) -> None:
        settings.VERITTA_EXECUTORS = [f"{__name__}.{cls.__name__}", "governance.executors.TextProcessExecutor"]
        executor_registry.cache_clear()

    yield register
    executor_registry.cache_clear()


def assert_routing_exception_kept(response: Any, records: list[dict[str, Any]], exc_class: str) -> None:
    """What gap 10 asks: the denial names the gate and the exception's class."""
    assert response.status_code == 500, response.status_code
    assert response.json()["reason_codes"] == ["GATE_EXCEPTION"], response.json()["reason_codes"]
    decision, blocked = records
    assert (decision["decision"], decision["gate"]) == ("DENY", "registry")
    assert decision["reason_codes"] == blocked["reason_codes"] == ["GATE_EXCEPTION"]
    assert blocked["evidence"] == {"gate": "registry", "exc_class": exc_class}
    assert decision["evidence"] == {**blocked["evidence"], "principal_roles": ["operator"]}  # the decision names the roles
    assert blocked["status"] == "BLOCKED" and blocked["action"] == "test_action"


@pytest.mark.parametrize(("executor", "exc_class"), [(BrokenRoutingLookup, "LookupError"), (BrokenRoutingArithmetic, "ArithmeticError")])
def test_a_routing_exception_is_recorded_with_its_own_class(api, audit_records, broken_registry, executor, exc_class):
    broken_registry(executor)
    response = api.process({"action": "test_action"})
    assert_routing_exception_kept(response, audit_records(response.json()["trace_id"]), exc_class)


def _suppressed_as_unknown_action(*args: Any, **kwargs: Any) -> Any:
    """The seed's bug: whatever routing raised, one generic routing code."""
    try:
        return _real_executor_for(*args, **kwargs)
    except VerittaError:
        raise
    except Exception:  # noqa: BLE001 - the deliberate suppression under test
        raise VerittaError("UNKNOWN_ACTION", evidence={}) from None


def _suppressed_without_class(*args: Any, **kwargs: Any) -> Any:
    """The same bug with the right code but the exception's class dropped."""
    try:
        return _real_executor_for(*args, **kwargs)
    except VerittaError:
        raise
    except Exception:  # noqa: BLE001 - the deliberate suppression under test
        raise VerittaError("GATE_EXCEPTION", evidence={"gate": "registry"}) from None


@pytest.mark.parametrize("suppressing_gate", [_suppressed_as_unknown_action, _suppressed_without_class])
def test_the_check_fails_against_a_registry_gate_that_suppresses_the_exception(
    api, audit_records, broken_registry, monkeypatch, suppressing_gate
):
    from governance import gates

    broken_registry(BrokenRoutingLookup)
    monkeypatch.setattr(gates, "executor_for", suppressing_gate)
    response = api.process({"action": "test_action"})
    with pytest.raises(AssertionError):
        assert_routing_exception_kept(response, audit_records(response.json()["trace_id"]), "LookupError")
