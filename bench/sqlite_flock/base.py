"""A what-if database backend for the HTTP bench (`--whatif-flock`): SQLite
whose writers queue on a blocking OS lock (flock on a file beside the
database) before they ask SQLite for its write lock.

A writer that finds SQLite's write lock taken otherwise waits in SQLite's
default busy handler, which sleeps 1, 2, 5, 10 … up to 100 ms between tries
and so often sleeps well past the moment the lock is freed. With flock the
kernel wakes the next writer as soon as the lock is released. This exists
to test that explanation (docs/PERFORMANCE.md), not to run in production.
"""

from __future__ import annotations

import fcntl
import os
from typing import Any

from django.db.backends.sqlite3 import base

WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE")


class DatabaseWrapper(base.DatabaseWrapper):
    _lock_fd: int | None = None
    _locked = False

    def _lock(self) -> None:
        if self._locked:
            return
        if self._lock_fd is None:
            self._lock_fd = os.open(f"{self.settings_dict['NAME']}.writelock", os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        self._locked = True

    def _unlock(self) -> None:
        if self._locked and self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            self._locked = False

    # atomic(): BEGIN IMMEDIATE ... COMMIT / ROLLBACK hold the lock throughout.
    def _start_transaction_under_autocommit(self) -> None:
        self._lock()
        try:
            super()._start_transaction_under_autocommit()
        except BaseException:
            self._unlock()
            raise

    def _commit(self) -> None:
        try:
            super()._commit()
        finally:
            self._unlock()

    def _rollback(self) -> None:
        try:
            super()._rollback()
        finally:
            self._unlock()

    def create_cursor(self, name: str | None = None) -> Any:
        cursor = self.connection.cursor(factory=FlockCursor)
        cursor.owner = self
        return cursor


class FlockCursor(base.SQLiteCursorWrapper):
    """An autocommit write statement (e.g. the G10 counter upsert) holds the
    lock for its own duration; statements inside atomic() already hold it."""

    owner: DatabaseWrapper

    def execute(self, query: str, params: Any = None) -> Any:
        owner = self.owner
        if owner.in_atomic_block or not query.lstrip()[:7].upper().startswith(WRITES):
            return super().execute(query, params)
        owner._lock()
        try:
            return super().execute(query, params)
        finally:
            owner._unlock()
