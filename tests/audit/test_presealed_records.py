"""The chain writer seals presealed drafts (canonical JSON made before the
lock, chain fields spliced in under it): the bytes and the hash must be those
of `seal`, the definition `audit verify` checks against."""

from __future__ import annotations

import json
import random

import pytest

from audit.records import RECORD_FIELDS, new_record, preseal, record_hash, seal, seal_presealed

TS = "2026-11-24T10:00:00.123456+00:00"
ODD_TEXT = ["", "é", "\u2028", '"quoted"', "back\\slash", "\x00\x1f", "😀", "a" * 300, "</script>"]


def _random_record(rng: random.Random) -> dict:
    def value(depth: int = 0):
        kind = rng.choice(["str", "int", "float", "none", "bool", "list", "dict"] if depth < 2 else ["str", "int"])
        if kind == "str":
            return rng.choice(ODD_TEXT)
        if kind == "int":
            return rng.randint(-(2**40), 2**40)
        if kind == "float":
            return rng.uniform(-1e6, 1e6)
        if kind == "none":
            return None
        if kind == "bool":
            return rng.random() < 0.5
        if kind == "list":
            return [value(depth + 1) for _ in range(rng.randint(0, 3))]
        return {rng.choice(ODD_TEXT + ["seq", "prev_hash", "ts_utc"]): value(depth + 1) for _ in range(rng.randint(0, 3))}

    chain = {"seq", "prev_hash", "record_hash", "ts_utc"}
    fields = {name: value() for name in RECORD_FIELDS if name not in chain and rng.random() < 0.7}
    return new_record(**fields)


@pytest.mark.parametrize("seed", range(300))
def test_presealed_bytes_and_hash_are_those_of_seal(seed):
    rng = random.Random(seed)
    record = _random_record(rng)
    seq, prev = rng.randint(1, 10**12), f"{rng.getrandbits(256):064x}"
    by_seal = dict(record, ts_utc=TS)
    expected = seal(by_seal, seq=seq, prev_hash=prev)
    draft = preseal(dict(record))
    assert seal_presealed(draft, seq=seq, prev_hash=prev, ts_utc=TS) == expected
    assert draft.record == by_seal
    assert draft.record["record_hash"] == record_hash(json.loads(expected))


def test_a_presealed_draft_is_not_changed_by_later_edits_of_its_record():
    """Its canonical JSON is fixed when presealed: what the gates decided then is what is sealed."""
    record = new_record(event_type="decision_audit", decision="ALLOW", matched_rules=["P0:size_within_limit"])
    draft = preseal(record)
    record["matched_rules"].append("added later")
    body = json.loads(seal_presealed(draft, seq=1, prev_hash="0" * 64, ts_utc=TS))
    assert body["matched_rules"] == ["P0:size_within_limit"]
