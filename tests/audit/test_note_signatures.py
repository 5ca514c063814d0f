"""Notes with several signatures (audit/signed_note.py): the log's key, a
second key (a rotation signs with the old and the new), and witness
cosignatures (C2SP tlog-cosignature v1), added, read and checked."""

from __future__ import annotations

import pytest

from audit import signed_note as sn

BODY = sn.checkpoint_body("veritta.test/log", 5, bytes(32))
OLD, NEW, WITNESS = b"\x01" * 32, b"\x02" * 32, b"\x03" * 32


def vkey(name: str, seed: bytes) -> str:
    return sn.vkey(name, sn.public_key_from_seed(seed))


def wkey(name: str, seed: bytes) -> str:
    return sn.cosigner_vkey(name, sn.public_key_from_seed(seed))


def test_a_note_signed_by_two_keys_verifies_under_each():
    note = sn.sign_note_with(BODY, [("veritta.test/log", OLD), ("veritta.test/log", NEW)])
    assert sn.verify_note(note, vkey("veritta.test/log", OLD)) == BODY
    assert sn.verify_note(note, vkey("veritta.test/log", NEW)) == BODY
    assert [s.name for s in sn.note_signatures(note)] == ["veritta.test/log"] * 2
    keys = [vkey("veritta.test/log", OLD), vkey("veritta.test/log", NEW), vkey("veritta.test/log", WITNESS)]
    assert sn.verified_signers(note, keys) == keys[:2]


def test_a_cosignature_is_added_once_and_verifies_with_its_time():
    note = sn.sign_note(BODY, "veritta.test/log", OLD)
    line = sn.cosignature_line(BODY, "witness.test/w1", WITNESS, timestamp=1764800000)
    cosigned = sn.add_signature_lines(note, [line])
    assert sn.add_signature_lines(cosigned, [line]) == cosigned  # the same witness is not added twice
    assert sn.verify_cosignature(cosigned, wkey("witness.test/w1", WITNESS)) == 1764800000
    assert sn.verify_note(cosigned, vkey("veritta.test/log", OLD)) == BODY  # the log's signature still holds
    assert sn.note_text(cosigned) == BODY


def test_a_cosignature_is_not_a_log_signature_and_vice_versa():
    note = sn.sign_note(BODY, "witness.test/w1", WITNESS)  # a plain signature by the witness's key
    with pytest.raises(sn.NoteVerificationError, match="no cosignature"):
        sn.verify_cosignature(note, wkey("witness.test/w1", WITNESS))  # key ids differ (0x01 vs 0x04)
    with pytest.raises(sn.KeyFormatError):
        sn.verify_note(note, wkey("witness.test/w1", WITNESS))


def test_a_forged_or_misplaced_cosignature_is_refused():
    note = sn.sign_note(BODY, "veritta.test/log", OLD)
    other = sn.checkpoint_body("veritta.test/log", 6, bytes(32))
    moved = sn.add_signature_lines(note, [sn.cosignature_line(other, "witness.test/w1", WITNESS, timestamp=1)])
    with pytest.raises(sn.NoteVerificationError, match="invalid cosignature"):
        sn.verify_cosignature(moved, wkey("witness.test/w1", WITNESS))
    with pytest.raises(sn.NoteVerificationError):
        sn.add_signature_lines(note, ["not a signature line\n"])
    with pytest.raises(ValueError):
        sn.cosignature_line(BODY, "witness.test/w1", WITNESS, timestamp=-1)
