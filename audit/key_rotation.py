"""Rotating the checkpoint signing key (`python manage.py audit rotate-key`):
a `key_rotation` record pair in the chain, the key ring file, and the handover
checkpoint signed by both keys (docs/DEPLOYMENT.md, "Rotating the checkpoint
signing key"). Kept apart from audit.keyring, which the verifier and the
checkpoint sealer read: rotation writes to the chain and seals, they must not."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import transaction

from audit import signed_note
from audit.chain import chain_append
from audit.checkpoints import checkpoint_create
from audit.keyring import KeyRing, KeyRingError, RingKey, key_name, keyring_from_file, signing_seed, write_keyring
from audit.models import Checkpoint
from audit.profile_hashes import profile_hash_of
from audit.records import ACTION, new_record
from veritta_site.canonical import digest_of


def rotate_signing_key(new_seed: bytes, *, attempts: int = 5) -> tuple[int, KeyRing]:
    """Hand the log over from the configured signing key to `new_seed`.

    Appends a `key_rotation` record pair (so the handover has a size of its
    own), writes the ring with the old key ending and the new key beginning at
    that size, then seals the handover checkpoint signed by both. The ring is
    written before the seal, so from then on no server still running the old
    key seals past the handover (`may_sign`); if one did in the moment before,
    the handover is made again further on. Returns (handover size, new ring)."""
    old_vkey = signed_note.vkey(key_name(), signed_note.public_key_from_seed(signing_seed()))
    new_vkey = signed_note.vkey(key_name(), signed_note.public_key_from_seed(new_seed))
    if new_vkey == old_vkey:
        raise KeyRingError("the new signing key is the current one")
    ring = keyring_from_file() or KeyRing.single(old_vkey)
    if ring.current.vkey != old_vkey:
        raise KeyRingError("VERITTA_AUDIT_SIGNING_KEY is not the key ring's current key")
    if ring.key_for(new_vkey) is not None:
        raise KeyRingError("the new signing key was used before: a key is never reused")
    for _ in range(attempts):
        size = _append_rotation_record(old=RingKey(old_vkey, 0, None).key_id, new=RingKey(new_vkey, 0, None).key_id)
        rotated = ring.rotated(new_vkey, at_size=size)
        write_keyring(rotated)
        if Checkpoint.objects.filter(tree_size__gte=size).exists():
            continue  # sealed by the old key alone meanwhile: hand over further on
        checkpoint_create(size=size, extra_signers=[new_seed])
        return size, rotated
    write_keyring(ring)  # no handover: the old key stays current
    raise KeyRingError("the log kept sealing past each handover; retry at a quieter time")


def _append_rotation_record(*, old: str, new: str) -> int:
    """PENDING and SUCCESS of the rotation, sequenced at once; returns the size
    of the log that ends with them."""
    evidence = {"old_key_id": old, "new_key_id": new}
    common = {
        "event_type": ACTION,
        "trace_id": str(uuid.uuid4()),
        "endpoint": "audit rotate-key",
        "actor": {"kind": "operator", "id": "manage.py"},
        "input_digest": digest_of(evidence),
        "digest_kind": "json",
        "profile_id": settings.VERITTA_POLICY_PROFILE,
        "profile_hash": profile_hash_of(settings.VERITTA_POLICY_PROFILE),
        "action": "key_rotation",
        "executor_id": "audit.keyring",  # as recorded since the first rotation: stored data
        "executor_version": "1.0.0",
        "evidence": evidence,
    }
    records = [
        new_record(**common, status="PENDING", reason_codes=["EXECUTION_ATTEMPT"]),
        new_record(**common, status="SUCCESS"),
    ]
    with transaction.atomic():  # the direct path: sequenced under the chain lock now
        receipts = chain_append(records)
    seq = receipts[-1].seq
    assert seq is not None
    return seq
