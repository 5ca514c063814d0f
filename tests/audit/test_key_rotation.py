"""Rotating the checkpoint signing key keeps history verifiable (issue 19,
audit/keyring.py): through a real gunicorn server, a rotation mid-log after
which `audit verify` is clean, a server still on the retired key that stops
sealing, and a checkpoint signed by the retired key outside its range refused."""

from __future__ import annotations

import base64
import json

import pytest

from audit import signed_note
from audit.keyring import KeyRing, KeyRingError, RingKey
from conftest import API_KEY
from tests.settings import TEST_ENV
from tests.support.appserver import manage

ORIGIN = "veritta.local/audit"
OLD_SEED = base64.b64decode(TEST_ENV["VERITTA_AUDIT_SIGNING_KEY"])


def _vkey(seed: bytes) -> str:
    return signed_note.vkey(ORIGIN, signed_note.public_key_from_seed(seed))


def _requests(server, n: int) -> None:
    for _ in range(n):  # three records each
        response = server.post("/process", json={"action": "test_action"}, headers={"X-API-Key": API_KEY})
        assert response.status_code == 200


def _verify(server, *args: str) -> dict:
    result = server.manage("audit", "verify", "--json", *args, check=False)
    return json.loads(result.stdout)


def _signers(note: str) -> set[str]:
    return {kid.hex() for _, kid in signed_note.note_signers(note)[1]}


def test_a_rotation_mid_log_verifies_and_a_retired_key_is_refused_outside_its_range(start_app_server):
    server = start_app_server(env={"VERITTA_AUDIT_CHECKPOINT_EVERY": "5"})
    checkpoints = server.tmp / "checkpoints"
    _requests(server, 4)  # 12 records: checkpoints at 5, 10 under the old key
    new_seed = signed_note.generate_seed()
    new_b64 = base64.b64encode(new_seed).decode()
    old_id, new_id = (RingKey(_vkey(s), 0, None).key_id for s in (OLD_SEED, new_seed))

    rotated = manage({**server.env, "VERITTA_AUDIT_NEW_SIGNING_KEY": new_b64}, "audit", "rotate-key")
    assert f"signed by keys {old_id} and {new_id}" in rotated.stdout
    ring = KeyRing.from_json((checkpoints / "keyring.json").read_text())
    handover = ring.keys[0].to_size
    assert [(k.key_id, k.from_size, k.to_size) for k in ring.keys] == [(old_id, 0, handover), (new_id, handover, None)]
    assert _signers((checkpoints / f"{handover:015d}.note").read_text()) == {old_id, new_id}
    assert new_b64 not in (checkpoints / "keyring.json").read_text()  # verifier keys only

    # A server still on the retired key seals nothing past the handover.
    _requests(server, 4)
    sizes = sorted(int(p.stem) for p in checkpoints.glob("*.note"))
    assert max(sizes) == handover

    # Every server on the new key: it seals again; the whole log verifies.
    server.stop()
    server.env["VERITTA_AUDIT_SIGNING_KEY"] = new_b64
    server.start()
    _requests(server, 4)
    later = sorted(int(p.stem) for p in checkpoints.glob("*.note") if int(p.stem) > handover)
    assert later and all(_signers((checkpoints / f"{s:015d}.note").read_text()) == {new_id} for s in later)
    report = _verify(server)
    assert report["ok"] and report["signatures_checked"], report["problems"]
    assert report["checkpoints_checked"] == len(list(checkpoints.glob("*.note")))
    # Without the ring, the new key alone cannot vouch for the old history.
    without_ring = _verify(server, "--vkey", _vkey(new_seed))
    assert not without_ring["ok"] and {p["kind"] for p in without_ring["problems"]} == {"signature"}

    # The retired key, stolen later, signs a checkpoint past its range: refused.
    forged_size = later[-1]
    note_path = checkpoints / f"{forged_size:015d}.note"
    body = note_path.read_text().split("\n\n", 1)[0] + "\n"
    note_path.write_text(signed_note.sign_note(body, ORIGIN, OLD_SEED))
    forged = _verify(server)
    assert not forged["ok"]
    assert [(p["seq"], p["kind"]) for p in forged["problems"]] == [(forged_size, "signature")]
    assert f"no signature by key {ORIGIN}+{new_id}" in forged["problems"][0]["detail"]
    # ... and next to the right signature too.
    note_path.write_text(signed_note.sign_note(body, ORIGIN, new_seed) + signed_note.signature_line(body, ORIGIN, OLD_SEED))
    forged = _verify(server)
    assert [p["detail"].split(": ", 1)[1] for p in forged["problems"]] == [
        f"signed by key {old_id}, which may sign sizes 0..{handover} only"
    ]


def _note(size: int, *seeds: bytes) -> str:
    body = signed_note.checkpoint_body(ORIGIN, size, bytes(32))
    note = signed_note.sign_note(body, ORIGIN, seeds[0])
    return note + "".join(signed_note.signature_line(body, ORIGIN, s) for s in seeds[1:])


def test_the_ring_asks_for_both_keys_at_the_handover_and_the_key_of_its_time_elsewhere():
    new_seed = signed_note.generate_seed()
    ring = KeyRing.single(_vkey(OLD_SEED)).rotated(_vkey(new_seed), at_size=20)
    assert ring.verify(_note(10, OLD_SEED)) and ring.verify(_note(30, new_seed))
    assert ring.verify(_note(20, OLD_SEED, new_seed))
    witness = signed_note.generate_seed()  # another key's cosignature is ignored
    assert ring.verify(_note(30, new_seed, witness))
    for refused in (_note(20, OLD_SEED), _note(20, new_seed), _note(30, OLD_SEED), _note(10, OLD_SEED, new_seed)):
        with pytest.raises(signed_note.NoteVerificationError):
            ring.verify(refused)


def test_a_ring_file_with_a_hole_or_a_reused_key_is_refused():
    old, new = _vkey(OLD_SEED), _vkey(signed_note.generate_seed())
    hole = {"keys": [{"vkey": old, "from_size": 0, "to_size": 20}, {"vkey": new, "from_size": 21, "to_size": None}]}
    reused = {"keys": [{"vkey": old, "from_size": 0, "to_size": 20}, {"vkey": old, "from_size": 20, "to_size": None}]}
    for bad in (hole, reused, {"keys": []}, {"nokeys": 1}):
        with pytest.raises(KeyRingError):
            KeyRing.from_json(json.dumps(bad))


def test_an_unreadable_ring_fails_closed(api, settings, tmp_path):
    """A damaged ring file neither crashes a request nor lets a checkpoint
    through: nothing is sealed, and verify reports every checkpoint."""
    from audit.checkpoints import checkpoint_create
    from audit.models import Checkpoint
    from audit.selectors import audit_verify

    api.process({"action": "test_action"})
    checkpoint_create()
    ring_file = tmp_path / "ring.json"
    ring_file.write_text("{not json")
    settings.VERITTA_AUDIT_KEYRING_FILE = str(ring_file)
    settings.VERITTA_AUDIT_CHECKPOINT_EVERY = 1
    assert api.process({"action": "test_action"}).status_code == 200  # the request is served
    assert Checkpoint.objects.count() == 1  # ... but nothing more is sealed
    report = audit_verify()
    assert not report.ok and {p.kind for p in report.problems} == {"signature"}
