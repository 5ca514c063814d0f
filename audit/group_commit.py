"""Group commit: the write transactions that the request threads of one
process start at the same moment share one transaction and one commit
(docs/ARCHITECTURE.md "The audit write path").

Every commit waits for its fsync (on SQLite holding the one write lock, on
PostgreSQL a WAL flush). With threaded workers (gunicorn `gthread`) each
request thread used to pay that on its own. Here a request thread hands its
write (a callable: the G10 counters and decision records, or a terminal
record) to the group. If no thread is committing, it leads: it takes every
write waiting at that moment, runs each in a savepoint of one transaction on
its own connection, commits once, and wakes the others. Threads arriving
meanwhile wait for the next leader, one of themselves. So:

- durability is unchanged: a thread returns only after the commit that holds
  its write (a PENDING record is durable before its executor runs);
- one write's failure is its own: it rolls back to its savepoint, the others
  commit; a failed commit fails every write of the batch, none is kept;
- a leader commits one batch and leaves, so no request waits behind more than
  one batch of others;
- a write alone in its batch (always so with sync workers, one request at a
  time) runs exactly as without a group: its own transaction, no savepoint;
- on PostgreSQL the batch's records go to the intake in one commit, and the
  sequencer step after it places them: receipts get their seq as before.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from django.conf import settings
from django.db import connection, transaction

from audit.chain import AuditSinkError, Receipt, chain_transaction, open_chain_transaction
from audit.chain_events import events

T = TypeVar("T")

_thread = threading.local()  # set while this thread leads: its writes' nested writes join


class _Write:
    __slots__ = ("alone", "context", "done", "error", "ran", "result", "work")

    def __init__(self, work: Callable[[], Any], *, alone: Callable[[], Any]) -> None:
        self.work = work
        self.alone = alone  # how it runs when the batch is only itself
        self.context = contextvars.copy_context()  # the trace id of its request, for logs
        self.done = False
        self.result: Any = None
        self.ran = False
        self.error: BaseException | None = None

    def run(self, *, alone: bool = False) -> None:
        self.result = self.context.run(self.alone if alone else self.work)
        self.ran = True


class GroupCommit:
    """One per process: the writes waiting, and whether a thread leads."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._waiting: list[_Write] = []
        self._leading = False

    def run(self, work: Callable[[], T], *, alone: Callable[[], T]) -> T:
        """Run `work` in a transaction shared with the writes of other threads
        (`alone` instead, when no other write shares it); return its result
        once that transaction has committed, or raise its error
        (AuditSinkError if the commit failed)."""
        write = _Write(work, alone=alone)
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
        if len(batch) == 1:  # alone: as without a group, its error rolls its transaction back
            batch[0].run(alone=True)
        else:
            with chain_transaction() as tx:
                for write in batch:
                    mark = tx.mark()
                    try:
                        with transaction.atomic():  # a savepoint: one write's failure is its own
                            write.run()
                    except Exception as exc:  # noqa: BLE001 - handed to the thread that wrote it
                        tx.rewind(mark)
                        write.error = exc
            for write in batch:  # PostgreSQL: receipts the sequencer step placed after the commit
                if isinstance(write.result, Receipt):
                    write.result = tx.settled(write.result)
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
    """Grouping is on, and no transaction is open on this thread to join."""
    joins = getattr(_thread, "leading", False) or open_chain_transaction() or connection.in_atomic_block
    return settings.VERITTA_AUDIT_GROUP_COMMIT and not joins


def _in_transaction(work: Callable[[], T]) -> T:
    with chain_transaction():
        return work()


def in_chain_transaction(work: Callable[[], T]) -> T:
    """Run `work` in a chain transaction (audit.chain.chain_transaction), shared
    with the writes other request threads of this process make at the same
    moment (or in the transaction open on this thread, which it joins).
    Returns its result once committed; raises AuditSinkError if the
    transaction cannot commit."""
    if _groups():
        return _group.run(work, alone=lambda: _in_transaction(work))
    return _in_transaction(work)


def grouped(work: Callable[[], T]) -> T:
    """Run `work`, whose appends make their own transaction when alone (on
    PostgreSQL a lone append commits and tries the chain lock in one round
    trip), in the group commit with whatever else is waiting."""
    return _group.run(work, alone=work) if _groups() else work()
