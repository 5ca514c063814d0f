"""The executor registry, built once per process from settings.VERITTA_EXECUTORS."""

from __future__ import annotations

from functools import cache

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from governance.executors import Executor
from veritta_site.semver import parse_semver


@cache
def executor_registry() -> dict[str, Executor]:
    registry: dict[str, Executor] = {}
    for path in settings.VERITTA_EXECUTORS:
        cls = import_string(path)
        if not (isinstance(cls, type) and issubclass(cls, Executor)):
            raise ImproperlyConfigured(f"{path} is not an Executor subclass")
        if parse_semver(cls.version) is None:
            raise ImproperlyConfigured(f"{path}: version {cls.version!r} is not semver")
        if cls.executor_id in registry:
            raise ImproperlyConfigured(f"executor id {cls.executor_id!r} registered twice")
        registry[cls.executor_id] = cls()
    return registry


def executors_described() -> list[dict[str, object]]:
    """What `governance executors` prints: every registered executor, by id."""
    return [
        {
            "executor_id": executor_id,
            "version": executor.version,
            "capabilities": sorted(executor.capabilities),
            "actions": sorted(executor.actions),
            "class": f"{type(executor).__module__}.{type(executor).__qualname__}",
        }
        for executor_id, executor in sorted(executor_registry().items())
    ]
