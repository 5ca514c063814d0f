"""Tests for audit.signed_note, cross-checked with golang.org/x/mod/sumdb/note."""

from __future__ import annotations

import base64
import hashlib

import pytest

from audit.signed_note import (
    Checkpoint,
    CheckpointFormatError,
    KeyFormatError,
    NoteVerificationError,
    checkpoint_body,
    generate_seed,
    key_id,
    parse_checkpoint,
    parse_skey,
    parse_vkey,
    public_key_from_seed,
    sign_note,
    signature_line,
    skey,
    verify_note,
    vkey,
)

# --- Vectors from golang.org/x/mod sumdb/note/note_test.go (TestSign, TestOpen). ---

PETER_SKEY = (
    "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
)
PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
GO_TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
PETER_SIG = (
    "\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1F"
    "FYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)
ENOCH_SIG = (
    "\u2014 EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1a"
    "GrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n"
)


def _corrupt_at_byte(line: str, offset: int) -> str:
    """Insert "ABCD" at a UTF-8 byte offset, as the Go test slices byte strings."""
    raw = line.encode("utf-8")
    return (raw[:offset] + b"ABCD" + raw[offset:]).decode("utf-8")


def test_go_signer_key_parses_to_matching_verifier_key() -> None:
    name, seed = parse_skey(PETER_SKEY)
    assert name == "PeterNeumann"
    public_key = public_key_from_seed(seed)
    assert key_id(name, public_key) == bytes.fromhex("c74f20a3")
    assert vkey(name, public_key) == PETER_VKEY
    assert skey(name, seed) == PETER_SKEY
    assert parse_vkey(PETER_VKEY) == (name, bytes.fromhex("c74f20a3"), public_key)


def test_go_key_id_matches_spec_formula() -> None:
    name, _, public_key = parse_vkey(ENOCH_VKEY)
    expected = hashlib.sha256(b"EnochRoot\n\x01" + public_key).digest()[:4]
    assert key_id(name, public_key) == expected == bytes.fromhex("af0cfe78")


def test_sign_reproduces_go_signed_note_exactly() -> None:
    name, seed = parse_skey(PETER_SKEY)
    # Ed25519 is deterministic, so our output must be byte-identical to Go's.
    assert sign_note(GO_TEXT, name, seed) == GO_TEXT + "\n" + PETER_SIG


def test_verify_go_notes() -> None:
    note = GO_TEXT + "\n" + PETER_SIG + ENOCH_SIG
    assert verify_note(note, PETER_VKEY) == GO_TEXT
    assert verify_note(note, ENOCH_VKEY) == GO_TEXT
    assert verify_note(note.encode("utf-8"), PETER_VKEY) == GO_TEXT


def test_verify_go_note_ignores_other_keys_even_if_broken() -> None:
    broken_enoch = _corrupt_at_byte(ENOCH_SIG, 60)
    note = GO_TEXT + "\n" + PETER_SIG + PETER_SIG + ENOCH_SIG + broken_enoch
    assert verify_note(note, PETER_VKEY) == GO_TEXT
    with pytest.raises(NoteVerificationError):
        verify_note(note, ENOCH_VKEY)


def test_verify_go_note_rejects_bad_signature() -> None:
    with pytest.raises(NoteVerificationError, match="invalid signature"):
        verify_note(GO_TEXT + "\n" + _corrupt_at_byte(PETER_SIG, 60), PETER_VKEY)


def test_verify_go_note_rejects_missing_signer() -> None:
    with pytest.raises(NoteVerificationError, match="no signature"):
        verify_note(GO_TEXT + "\n" + ENOCH_SIG, PETER_VKEY)
    misnamed = PETER_SIG.replace("PeterNeumann", "CarmenSandiego")
    with pytest.raises(NoteVerificationError):
        verify_note(GO_TEXT + "\n" + misnamed, PETER_VKEY)
    wrong_id = PETER_SIG.replace("x08g", "xxxx")
    with pytest.raises(NoteVerificationError):
        verify_note(GO_TEXT + "\n" + wrong_id, PETER_VKEY)


@pytest.mark.parametrize(
    "note",
    [
        GO_TEXT,
        GO_TEXT + "\n",
        GO_TEXT + "\n" + PETER_SIG[:-1],
        "\x01" + GO_TEXT + "\n" + PETER_SIG,
        GO_TEXT
        + "\n"
        + "\u2014 Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FF"
        "YC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=",
        GO_TEXT + "\n" + PETER_SIG + "Unexpected line.\n",
        GO_TEXT + "\n" + PETER_SIG * 101,
        GO_TEXT + "\n" + PETER_SIG.replace("\u2014", "-"),
        GO_TEXT + "\n" + PETER_SIG.replace("\u2014 ", "\u2014"),
        GO_TEXT + "\n" + PETER_SIG.replace("AM=\n", "AM\n"),
        GO_TEXT + "\n" + PETER_SIG.replace("\n", "\r\n"),
        GO_TEXT + "\n" + "\u2014 PeterNeumann AAAA\n",
    ],
)
def test_verify_rejects_malformed_notes(note: str) -> None:
    with pytest.raises(NoteVerificationError):
        verify_note(note, PETER_VKEY)


def test_verify_rejects_invalid_utf8_bytes() -> None:
    with pytest.raises(NoteVerificationError):
        verify_note(b"\xff" + (GO_TEXT + "\n" + PETER_SIG).encode("utf-8"), PETER_VKEY)


def _all_manglings(key: str) -> list[str]:
    """Every proper substring and every single-character increment, as in Go's tests."""
    out = {key[i:j] for i in range(len(key) + 1) for j in range(i + 1, len(key) + 1)}
    out |= {key[:i] + chr(ord(key[i]) + 1) + key[i + 1 :] for i in range(len(key))}
    out.discard(key)
    return sorted(out)


def test_mangled_verifier_keys_are_rejected() -> None:
    for bad in _all_manglings(PETER_VKEY):
        with pytest.raises(KeyFormatError):
            parse_vkey(bad)
    # Go's extra cases: wrong key length / unknown algorithm, with matching ids.
    with pytest.raises(KeyFormatError):
        parse_vkey(
            "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY=="
        )
    with pytest.raises(KeyFormatError):
        parse_vkey("PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW")


def test_mangled_signer_keys_are_rejected() -> None:
    for bad in _all_manglings(PETER_SKEY):
        with pytest.raises(KeyFormatError):
            parse_skey(bad)


def test_verify_note_with_bad_vkey_raises_key_error() -> None:
    with pytest.raises(KeyFormatError):
        verify_note(GO_TEXT + "\n" + PETER_SIG, PETER_VKEY[:-1])


# --- Round trips with fresh keys. ---


def test_round_trip_with_generated_key() -> None:
    seed = generate_seed()
    assert len(seed) == 32
    assert seed != generate_seed()
    name = "veritta.example/log"
    verifier = vkey(name, public_key_from_seed(seed))
    body = checkpoint_body(name, 42, bytes(range(32)))
    note = sign_note(body, name, seed)
    assert note.startswith(body + "\n\u2014 " + name + " ")
    assert verify_note(note, verifier) == body
    assert parse_skey(skey(name, seed)) == (name, seed)


def test_tampered_body_fails() -> None:
    seed = generate_seed()
    verifier = vkey("log", public_key_from_seed(seed))
    body = checkpoint_body("log", 10, b"\x11" * 32)
    note = sign_note(body, "log", seed)
    tampered = note.replace("\n10\n", "\n11\n", 1)
    assert tampered != note
    with pytest.raises(NoteVerificationError, match="invalid signature"):
        verify_note(tampered, verifier)


def test_tampered_signature_fails() -> None:
    seed = generate_seed()
    verifier = vkey("log", public_key_from_seed(seed))
    body = checkpoint_body("log", 10, b"\x11" * 32)
    note = sign_note(body, "log", seed)
    line = note[len(body) + 1 :]
    raw = bytearray(base64.b64decode(line.split(" ")[2]))
    raw[10] ^= 1  # a byte of the Ed25519 signature, after the 4-byte key id
    bad_line = f"\u2014 log {base64.b64encode(bytes(raw)).decode()}\n"
    with pytest.raises(NoteVerificationError, match="invalid signature"):
        verify_note(body + "\n" + bad_line, verifier)


def test_wrong_key_fails() -> None:
    seed, other = generate_seed(), generate_seed()
    note = sign_note("hello\n", "log", seed)
    with pytest.raises(NoteVerificationError):
        verify_note(note, vkey("log", public_key_from_seed(other)))
    with pytest.raises(NoteVerificationError):
        verify_note(note, vkey("other-log", public_key_from_seed(seed)))


def test_same_name_and_key_id_collision_is_verified_and_rejected() -> None:
    """A line claiming our (name, key id) but signed by another key must fail."""
    seed = generate_seed()
    verifier = vkey("log", public_key_from_seed(seed))
    good = sign_note("hello\n", "log", seed)
    other_line = signature_line("hello\n", "log", generate_seed())
    forged_sig = base64.b64decode(other_line.split(" ")[2])[4:]
    kid = key_id("log", public_key_from_seed(seed))
    forged = f"\u2014 log {base64.b64encode(kid + forged_sig).decode()}\n"
    with pytest.raises(NoteVerificationError, match="invalid signature"):
        verify_note(good + forged, verifier)


def test_cosigned_note_verifies_for_each_key() -> None:
    log_seed, witness_seed = generate_seed(), generate_seed()
    body = checkpoint_body("log", 3, b"\x22" * 32)
    note = sign_note(body, "log", log_seed) + signature_line(
        body, "witness", witness_seed
    )
    assert verify_note(note, vkey("log", public_key_from_seed(log_seed))) == body
    assert (
        verify_note(note, vkey("witness", public_key_from_seed(witness_seed))) == body
    )


def test_text_with_blank_lines_splits_at_last_blank_line() -> None:
    seed = generate_seed()
    body = "first\n\nsecond\n"
    note = sign_note(body, "log", seed)
    assert verify_note(note, vkey("log", public_key_from_seed(seed))) == body


@pytest.mark.parametrize("name", ["", "a+b", "a b", "a\tb", "a\u00a0b", "a\nb"])
def test_invalid_key_names_rejected(name: str) -> None:
    seed = generate_seed()
    with pytest.raises(ValueError, match="invalid key name"):
        key_id(name, public_key_from_seed(seed))
    with pytest.raises(ValueError, match="invalid key name"):
        sign_note("hello\n", name, seed)


@pytest.mark.parametrize(
    "body", ["", "no newline", "bad\x00char\n", "tab\there\n", "\ud800\n"]
)
def test_sign_rejects_bad_bodies(body: str) -> None:
    with pytest.raises(ValueError, match="note text"):
        sign_note(body, "log", generate_seed())


def test_sign_rejects_bad_seed() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        sign_note("hello\n", "log", b"short")


# --- Checkpoints. ---


def test_checkpoint_body_format() -> None:
    root = bytes(range(32))
    body = checkpoint_body("example.com/log", 20852163, root)
    b64 = base64.b64encode(root).decode()
    assert body == f"example.com/log\n20852163\n{b64}\n"
    assert parse_checkpoint(body) == ("example.com/log", 20852163, root, ())
    with_ext = checkpoint_body("example.com/log", 0, root, ["ext one", "ext2"])
    assert with_ext == f"example.com/log\n0\n{b64}\next one\next2\n"
    parsed = parse_checkpoint(with_ext)
    assert isinstance(parsed, Checkpoint)
    assert parsed.extensions == ("ext one", "ext2")


def test_parse_spec_example_checkpoint_body() -> None:
    """Body of the example in c2sp.org/tlog-checkpoint."""
    root_b64 = "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I="
    body = f"example.com/behind-the-sofa\n20852163\n{root_b64}\n"
    origin, size, root, extensions = parse_checkpoint(body)
    assert (origin, size, extensions) == ("example.com/behind-the-sofa", 20852163, ())
    assert root == base64.b64decode(root_b64)
    assert checkpoint_body(origin, size, root) == body


ROOT_B64 = base64.b64encode(b"\x07" * 32).decode()
URLSAFE_B64 = base64.urlsafe_b64encode(b"\xff" * 32).decode()
SHORT_B64 = base64.b64encode(b"x" * 31).decode()


@pytest.mark.parametrize(
    "body",
    [
        "",
        f"log\n1\n{ROOT_B64}",  # no final newline
        f"log\n1\n{ROOT_B64}\n\n",  # empty extension line
        "log\n1\n",  # missing root
        f"\n1\n{ROOT_B64}\n",  # empty origin
        f"log\n01\n{ROOT_B64}\n",  # leading zero
        f"log\n-1\n{ROOT_B64}\n",
        f"log\n+1\n{ROOT_B64}\n",
        f"log\n 1\n{ROOT_B64}\n",
        f"log\n1.0\n{ROOT_B64}\n",
        f"log\n\u0661\n{ROOT_B64}\n",  # Arabic-Indic digit one
        f"log\n\n{ROOT_B64}\n",
        f"log\n1\n{ROOT_B64.rstrip('=')}\n",  # unpadded
        f"log\n1\n{URLSAFE_B64}\n",  # URL alphabet
        f"log\n1\n{SHORT_B64}\n",  # wrong length
        f"log\n1\n {ROOT_B64}\n",
        f"log\r\n1\n{ROOT_B64}\n",
    ],
)
def test_parse_checkpoint_rejects_malformed(body: str) -> None:
    with pytest.raises(CheckpointFormatError):
        parse_checkpoint(body)


@pytest.mark.parametrize(
    ("origin", "size", "root", "extensions"),
    [
        ("", 1, b"\x00" * 32, ()),
        ("a\nb", 1, b"\x00" * 32, ()),
        ("log", -1, b"\x00" * 32, ()),
        ("log", True, b"\x00" * 32, ()),
        ("log", 1, b"\x00" * 31, ()),
        ("log", 1, b"\x00" * 32, ("",)),
        ("log", 1, b"\x00" * 32, ("a\nb",)),
        ("log\x01", 1, b"\x00" * 32, ()),
    ],
)
def test_checkpoint_body_rejects_bad_fields(
    origin: str, size: int, root: bytes, extensions: tuple[str, ...]
) -> None:
    with pytest.raises(CheckpointFormatError):
        checkpoint_body(origin, size, root, extensions)


def test_signed_checkpoint_end_to_end() -> None:
    seed = generate_seed()
    origin = "veritta.example/audit"
    root = hashlib.sha256(b"root").digest()
    note = sign_note(checkpoint_body(origin, 123, root), origin, seed)
    body = verify_note(note, vkey(origin, public_key_from_seed(seed)))
    assert parse_checkpoint(body) == Checkpoint(origin, 123, root, ())
