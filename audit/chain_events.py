"""What the chain writer tells the layers above it.

Metrics, checkpoint sealing and promise signing all read the chain, so the
chain cannot import them without a circle. Instead they are connected here
once, at startup (audit/apps.py), and the chain calls whatever is connected.
Nothing connected is a startup error, never a silent no-op: a chain that
sealed no checkpoints or signed no promises would fail open.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any


@dataclass(frozen=True)
class ChainEvents:
    # records committed (their drafts; `since`: when the transaction began)
    appended: Callable[..., None]
    # a sequencer batch committed (`records` moved; `since`: when it began)
    integrated: Callable[..., None]
    # the intake is behind by `lag`
    integration_lag: Callable[[timedelta], None]
    # a write failed and was rolled back
    sink_failure: Callable[[BaseException], None]
    # records first..last were sequenced: seal a checkpoint if one is due
    checkpoint_due: Callable[[int, int], None]
    # a group commit committed this many request threads' writes (audit.group_commit)
    group_committed: Callable[[int], None]
    # the signed promise for an entry hash queued at `queued_at`
    promise: Callable[..., dict[str, Any]]


_connected: ChainEvents | None = None


def connect(events: ChainEvents) -> None:
    global _connected
    _connected = events


def events() -> ChainEvents:
    if _connected is None:
        raise RuntimeError("audit.chain_events not connected: the audit app is not ready")
    return _connected
