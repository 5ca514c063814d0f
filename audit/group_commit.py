"""Group commit on the direct path (SQLite): the write transactions that the
request threads of one process start at the same moment share one
transaction and one commit (docs/ARCHITECTURE.md "Group commit").

SQLite has one write lock, and every commit holds it across its fsync. With
threaded workers (gunicorn `gthread`) each request thread used to take that
lock and pay that fsync on its own. Here a request thread hands its write (a
callable: the G10 counters and decision records, or a terminal record) to
the group. If no thread is committing, it leads: it takes every write waiting
at that moment, runs each in a savepoint of one transaction on its own
connection, commits once, and wakes the others. Threads arriving meanwhile
wait for the next leader, one of themselves. So:

- durability is unchanged: a thread returns only after the commit that holds
  its write (a PENDING record is durable before its executor runs);
- one write's failure is its own: it rolls back to its savepoint, the others
  commit; a failed commit fails every write of the batch, none is kept;
- a leader commits one batch and leaves, so no request waits behind more than
  one batch of others;
- a process serving one request at a time (sync workers) always leads a batch
  of one: exactly one transaction per write, as before, and no savepoint.

PostgreSQL needs none of this: its writers commit to the intake without the
chain lock and share WAL flushes through PostgreSQL's own group commit.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from django.conf import settings
from django.db import connection, transaction

from audit.chain import AuditSinkError, chain_transaction, open_chain_transaction
from audit.chain_events import events

T = TypeVar("T")

_thread = threading.local()  # set while this thread leads: its writes' nested writes join


class _Write:
    __slots__ = ("context", "done", "error", "ran", "result", "work")

    def __init__(self, work: Callable[[], Any]) -> None:
        self.work = work
        self.context = contextvars.copy_context()  # the trace id of its request, for logs
        self.done = False
        self.result: Any = None
        self.ran = False
        self.error: BaseException | None = None

    def run(self) -> None:
        self.result = self.context.run(self.work)
        self.ran = True


class GroupCommit:
    """One per process: the writes waiting, and whether a thread leads."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._waiting: list[_Write] = []
        self._leading = False

    def run(self, work: Callable[[], T]) -> T:
        """Run `work` in a transaction shared with the writes of other threads;
        return its result once that transaction has committed, or raise its
        error (AuditSinkError if the commit failed)."""
        write = _Write(work)
        with self._cond:
            self._waiting.append(write)
            while self._leading and not write.done:
                self._cond.wait()
            batch: list[_Write] = []
            if not write.done:  # nobody leads: this thread takes every write waiting
                self._leading = True
                batch, self._waiting = self._waiting, []
        if batch:
            try:
                _commit(batch)
            finally:
                with self._cond:
                    for each in batch:
                        if each.error is None and not each.ran:  # the leader was interrupted
                            each.error = AuditSinkError("GroupCommitInterrupted")
                        each.done = True
                    self._leading = False
                    self._cond.notify_all()
        if write.error is not None:
            raise write.error
        return write.result


def _commit(batch: list[_Write]) -> None:
    _thread.leading = True
    try:
        with chain_transaction() as tx:
            if len(batch) == 1:  # alone: its error rolls the transaction back, as without a group
                batch[0].run()
            else:
                for write in batch:
                    mark = tx.mark()
                    try:
                        with transaction.atomic():  # a savepoint: one write's failure is its own
                            write.run()
                    except Exception as exc:  # noqa: BLE001 - handed to the thread that wrote it
                        tx.rewind(mark)
                        write.error = exc
    except Exception as exc:  # noqa: BLE001 - the commit failed: nothing of the batch is kept
        for write in batch:
            if write.error is None:
                write.result, write.error = None, exc
        return
    finally:
        _thread.leading = False
    events().group_committed(len(batch))


_group = GroupCommit()


def _groups() -> bool:
    """SQLite, and no transaction open on this thread to join."""
    joins = getattr(_thread, "leading", False) or open_chain_transaction() or connection.in_atomic_block
    return connection.vendor == "sqlite" and settings.VERITTA_AUDIT_GROUP_COMMIT and not joins


def in_chain_transaction(work: Callable[[], T]) -> T:
    """Run `work` in a chain transaction (audit.chain.chain_transaction): in the
    process's group commit on SQLite, in a transaction of its own otherwise (or
    the one open on this thread, which it joins). Returns its result once
    committed; raises AuditSinkError if the transaction cannot commit."""
    if _groups():
        return _group.run(work)
    with chain_transaction():
        return work()


def grouped(work: Callable[[], T]) -> T:
    """Run `work`, whose appends make their own transaction, in the group
    commit where there is one (SQLite); as it is elsewhere (on PostgreSQL a
    lone append goes to the intake and may be sequenced at once)."""
    return _group.run(work) if _groups() else work()
