"""Group commit (audit/group_commit.py), as a threaded server process runs it:
request threads on their own connections to a fresh database. Writes that
wait while another thread commits are committed together by the next
leader, one savepoint each: one write's failure is its own, a failed commit
fails every write of its batch, and the chain stays gapless either way. On
PostgreSQL the batch goes to the intake in one commit and the receipts still
get their seq from the sequencer step after it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.support.appserver import observe_in_shell

# Runs in `manage.py shell`; prints one JSON object of observations.
SCRIPT = r"""
import json, threading, time, uuid
from django.conf import settings
from django.db import connection
from prometheus_client import REGISTRY
from audit import group_commit
from audit.chain import chain_append
from audit.models import AuditRecord
from audit.records import new_record

def draft():
    return new_record(event_type="decision_audit", decision="ALLOW", gate="ALL", trace_id=str(uuid.uuid4()))

def seqs():
    return list(AuditRecord.objects.order_by("seq").values_list("seq", flat=True))

def counted():
    count = REGISTRY.get_sample_value("veritta_audit_group_commit_writes_count") or 0
    return count, REGISTRY.get_sample_value("veritta_audit_group_commit_writes_sum") or 0

group = group_commit._group
results = {}

def call(name, work):
    try:
        results[name] = ["ok", group_commit.grouped(work).seq]
    except Exception as exc:
        results[name] = ["error", type(exc).__name__]
    finally:
        connection.close()

def append():
    return chain_append([draft()])[0]

def append_then_fail():
    chain_append([draft()])
    raise ValueError("this write's caller fails after appending")

def batch(leader_work, followers):
    # The leader's write holds its transaction open until every follower waits
    # for the next leader; they are then committed together, in arrival order.
    def leader():
        deadline = time.monotonic() + 30
        while len(group._waiting) < len(followers) and time.monotonic() < deadline:
            time.sleep(0.005)
        return leader_work()
    threads = [threading.Thread(target=call, args=("leader", leader))]
    threads[0].start()
    while not group._leading:
        time.sleep(0.001)
    for waiting, (name, work) in enumerate(followers, start=1):
        threads.append(threading.Thread(target=call, args=(name, work)))
        threads[-1].start()
        while len(group._waiting) < waiting:  # one at a time: they wait in this order
            time.sleep(0.001)
    for thread in threads:
        thread.join(60)

out = {"vendor": connection.vendor}
before = counted()
batch(append, [("b", append), ("c", append_then_fail), ("d", append)])
after = counted()
out["isolated"] = {"results": dict(results), "stored": seqs(), "commits": after[0] - before[0], "writes": after[1] - before[1]}
if connection.vendor == "sqlite":  # the mirror is written at the commit

    results.clear()
    log = settings.VERITTA_AUDIT_LOG_PATH
    blocker = log.parent / "not-a-directory"
    blocker.write_text("")
    def mirror_refuses_then_append():
        settings.VERITTA_AUDIT_LOG_PATH = blocker / "audit.log"  # its parent is a file: the mirror refuses
        return append()
    batch(append, [("e", mirror_refuses_then_append), ("f", append)])
    # The refusal raised an audit_sink_failure alert, whose delivery thread
    # records it in the chain. Let it finish while the mirror still refuses
    # (so its records are refused too), not race the reads below.
    for thread in threading.enumerate():
        if thread.name == "veritta-alert":
            thread.join(60)
    settings.VERITTA_AUDIT_LOG_PATH = log
    out["refused"] = {"results": dict(results), "stored": seqs()}
    out["next"] = group_commit.grouped(append).seq
    out["mirror"] = [json.loads(line)["seq"] for line in log.read_text().splitlines()]
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def observed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return observe_in_shell(Path(tmp_path_factory.mktemp("group-commit")), SCRIPT)


def test_waiting_writes_share_one_commit_and_one_failure_stays_its_own(observed):
    isolated = observed["isolated"]
    # The leader alone, then b, c and d in one commit; c's caller failed after
    # appending, so its record rolled back to its savepoint and d took its place.
    assert isolated["results"] == {"leader": ["ok", 1], "b": ["ok", 2], "c": ["error", "ValueError"], "d": ["ok", 3]}
    assert isolated["stored"] == [1, 2, 3]
    assert (isolated["commits"], isolated["writes"]) == (2, 4)


def test_a_failed_commit_fails_every_write_of_its_batch(observed):
    if observed["vendor"] != "sqlite":
        pytest.skip("on PostgreSQL the mirror is written by the sequencer, after the intake's commit")
    refused = observed["refused"]
    # The leader committed alone; the mirror then refused the batch of e and f
    # at its commit, so both failed, although only e's write changed the path.
    assert refused["results"] == {"leader": ["ok", 4], "e": ["error", "AuditSinkError"], "f": ["error", "AuditSinkError"]}
    assert refused["stored"] == [1, 2, 3, 4]
    # Nothing refused is kept or mirrored, and the chain goes on without a gap.
    assert observed["next"] == 5
    assert observed["mirror"] == [1, 2, 3, 4, 5]
