"""Named hooks: how a lower layer calls what a layer above it provides
(docs/ARCHITECTURE.md "Layers").

The upper app registers its function (or bundle of functions) once, in its
AppConfig.ready(); the lower layer calls `hook.provided()`. A hook nothing has
registered raises HookMissing: fail closed, never a silent no-op or an empty
value in a record.
"""

from __future__ import annotations

from typing import Generic, TypeVar

Provided = TypeVar("Provided")


class HookMissing(RuntimeError):
    """Nothing registered the hook: the app that provides it is not installed or not ready."""


class Hook(Generic[Provided]):
    def __init__(self, name: str, *, provided_by: str) -> None:
        self.name = name
        self.provided_by = provided_by
        self._provided: Provided | None = None

    def register(self, provided: Provided) -> None:
        self._provided = provided

    def provided(self) -> Provided:
        if self._provided is None:
            raise HookMissing(f"{self.name}: nothing registered ({self.provided_by} is not installed or not ready)")
        return self._provided
