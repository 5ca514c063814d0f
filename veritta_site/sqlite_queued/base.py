"""SQLite whose writers queue on an OS lock beside the database before they
ask SQLite for its one write lock (docs/ARCHITECTURE.md "SQLite's writer queue").

SQLite makes a writer that finds its write lock taken wait in its busy
handler, which sleeps 1, 2, 5, 10 … up to 100 ms between tries: it often
sleeps long after the lock was freed, and under threaded workers the lock
then sits idle while requests wait (docs/PERFORMANCE.md measured it). Here a
writer first takes an exclusive `flock` on `<database>.writelock`, trying
again every 0.1 ms at first and every millisecond at most, so the next writer
starts within a millisecond of the last commit. The wait keeps SQLite's
bound (the `timeout` option, VERITTA_SQLITE_LOCK_TIMEOUT_S): past it the
writer fails with "database is locked", as SQLite's own wait would, and the
request fails closed.

The queue only orders writers; SQLite's own lock still guarantees that two
never write at once (a process not using this backend, a `sqlite3` shell,
still waits in SQLite's busy handler). In-memory databases have no file and
no queue.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
from functools import lru_cache
from typing import Any

from django.db import OperationalError
from django.db.backends.sqlite3 import base

WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE")
FIRST_RETRY_S, MAX_RETRY_S = 0.0001, 0.001


# The hooks overridden below are Django's backend-private methods, which
# django-stubs does not declare: hence the narrow ignores on their super() calls.
class DatabaseWrapper(base.DatabaseWrapper):
    _queue_fd: int | None = None
    _queued = False

    def _queue_path(self) -> str | None:
        name = str(self.settings_dict["NAME"])
        return None if self.is_in_memory_db() or not name else f"{name}.writelock"

    def _enter_queue(self) -> None:
        if self._queued:
            return
        if self._queue_fd is None:
            path = self._queue_path()
            if path is None:
                return
            self._queue_fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        deadline = time.monotonic() + float(self.settings_dict["OPTIONS"].get("timeout", 5.0))
        retry = FIRST_RETRY_S
        while True:
            try:
                fcntl.flock(self._queue_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EWOULDBLOCK):
                    raise
            if time.monotonic() >= deadline:
                raise OperationalError("database is locked (writer queue)")
            time.sleep(retry)
            retry = min(retry * 2, MAX_RETRY_S)
        self._queued = True

    def _leave_queue(self) -> None:
        if self._queued and self._queue_fd is not None:
            fcntl.flock(self._queue_fd, fcntl.LOCK_UN)
        self._queued = False

    # atomic(): BEGIN IMMEDIATE … COMMIT / ROLLBACK, in the queue throughout.
    def _start_transaction_under_autocommit(self) -> None:
        self._enter_queue()
        try:
            super()._start_transaction_under_autocommit()  # type: ignore[misc]  # django-stubs omits the private hook
        except BaseException:
            self._leave_queue()
            raise

    def _commit(self) -> None:
        try:
            super()._commit()  # type: ignore[misc]  # django-stubs omits the private hook
        finally:
            self._leave_queue()

    def _rollback(self) -> None:
        try:
            super()._rollback()  # type: ignore[misc]  # django-stubs omits the private hook
        finally:
            self._leave_queue()

    def _close(self) -> None:
        try:
            super()._close()  # type: ignore[misc]  # django-stubs omits the private hook
        finally:
            self._leave_queue()
            if self._queue_fd is not None:
                os.close(self._queue_fd)
                self._queue_fd = None

    def create_cursor(self, name: str | None = None) -> Any:
        cursor = self.connection.cursor(factory=QueuedCursor)
        cursor.owner = self
        return cursor


class QueuedCursor(base.SQLiteCursorWrapper):
    """A write statement outside atomic() (autocommit) queues for its own
    duration; inside atomic() the transaction already holds the queue."""

    owner: DatabaseWrapper

    def execute(self, query: str, params: Any = None) -> Any:
        owner = self.owner
        if owner.in_atomic_block or owner._queued or not query.lstrip()[:7].upper().startswith(WRITES):
            return super().execute(query, params)
        owner._enter_queue()
        try:
            return super().execute(query, params)
        finally:
            owner._leave_queue()

    def convert_query(self, query: str, *, param_names: list[str] | None = None) -> str:
        # The same few statements run on every request: their "%s" to "?"
        # rewrite (a regex) is made once per statement text.
        if param_names is None:
            return _qmark(query)
        return str(super().convert_query(query, param_names=param_names))


@lru_cache(maxsize=512)
def _qmark(query: str) -> str:
    return base.FORMAT_QMARK_REGEX.sub("?", query).replace("%%", "%")
