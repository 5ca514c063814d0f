"""What the chain writer tells the layers above it.

Metrics, checkpoint sealing and promise signing all read the chain, so the
chain cannot import them without a circle. Instead they are connected here
once, at startup (audit/apps.py), and the chain calls whatever is connected.
Nothing connected is an error (audit.hooks.HookMissing), never a silent no-op:
a chain that sealed no checkpoints or signed no promises would fail open.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from audit.hooks import Hook


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


connected: Hook[ChainEvents] = Hook("audit.chain_events.connected", provided_by="the audit app")


def events() -> ChainEvents:
    return connected.provided()
