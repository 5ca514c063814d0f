"""C2SP signed notes (c2sp.org/signed-note) and checkpoints (c2sp.org/tlog-checkpoint).

Ed25519 only. Pure Python, no Django. Formats are byte-compatible with
golang.org/x/mod/sumdb/note, so checkpoints can be checked by standard
transparency-log tooling (witnesses, monitors).

A note is ``text + "\\n" + signature lines``; each signature line is
``"— <key name> <base64(4-byte key id || signature)>\\n"`` and the Ed25519
signature covers the text bytes, including its final newline.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import secrets
from collections.abc import Sequence
from typing import NamedTuple

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

ALG_ED25519 = 0x01
SEED_SIZE = 32
PUBLIC_KEY_SIZE = 32
SIGNATURE_SIZE = 64
ROOT_HASH_SIZE = 32

# Verifiers must accept at least 16 signatures; cap parsing work like Go does.
MAX_SIGNATURES = 100

_SIG_PREFIX = "\u2014 "  # EM DASH, SPACE
_PRIVATE_PREFIX = "PRIVATE+KEY+"
_HEX8 = re.compile(r"[0-9a-fA-F]{8}")
_DECIMAL = re.compile(r"0|[1-9][0-9]*")
# ASCII control characters other than newline are forbidden anywhere in a note.
_FORBIDDEN_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f]")


class NoteVerificationError(Exception):
    """The note is malformed, carries no signature by the key, or a signature is bad."""


class KeyFormatError(ValueError):
    """A verifier or signer key string is malformed or inconsistent."""


class CheckpointFormatError(ValueError):
    """A checkpoint body does not follow c2sp.org/tlog-checkpoint."""


class Checkpoint(NamedTuple):
    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...]


def _b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _b64decode_strict(text: str) -> bytes:
    """Standard padded base64; only the canonical encoding is accepted.

    Raises ValueError. Canonical-only means one byte string has exactly one
    textual form, so a note cannot be re-encoded without changing its text.
    """
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error) as exc:
        raise ValueError("invalid base64") from exc
    if _b64encode(raw) != text:
        raise ValueError("non-canonical base64")
    return raw


def is_valid_key_name(name: str) -> bool:
    """Key names are non-empty and contain neither Unicode spaces nor '+'."""
    return (
        isinstance(name, str)
        and name != ""
        and "+" not in name
        and not any(ch.isspace() for ch in name)
        and _FORBIDDEN_CONTROL.search(name) is None
        and _is_utf8_encodable(name)
    )


def _is_utf8_encodable(text: str) -> bool:
    # Lone surrogates are representable in str but are not valid UTF-8.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _check_name(name: str) -> None:
    if not is_valid_key_name(name):
        raise ValueError(f"invalid key name {name!r}")


def generate_seed() -> bytes:
    """Fresh 32-byte Ed25519 private seed from the OS CSPRNG."""
    return secrets.token_bytes(SEED_SIZE)


def _private_key(seed: bytes) -> Ed25519PrivateKey:
    if not isinstance(seed, bytes) or len(seed) != SEED_SIZE:
        raise ValueError("Ed25519 seed must be 32 bytes")
    return Ed25519PrivateKey.from_private_bytes(seed)


def public_key_from_seed(seed: bytes) -> bytes:
    """Raw 32-byte Ed25519 public key for a seed."""
    return _private_key(seed).public_key().public_bytes_raw()


def key_id(name: str, public_key: bytes) -> bytes:
    """First 4 bytes of SHA-256(name || 0x0A || 0x01 || public key)."""
    _check_name(name)
    if len(public_key) != PUBLIC_KEY_SIZE:
        raise ValueError("Ed25519 public key must be 32 bytes")
    material = name.encode("utf-8") + b"\n" + bytes([ALG_ED25519]) + public_key
    return hashlib.sha256(material).digest()[:4]


def vkey(name: str, public_key: bytes) -> str:
    """Verifier key string ``<name>+<hex key id>+<base64(0x01 || pubkey)>``."""
    encoded_key = _b64encode(bytes([ALG_ED25519]) + public_key)
    return f"{name}+{key_id(name, public_key).hex()}+{encoded_key}"


def skey(name: str, seed: bytes) -> str:
    """Private signer key string.

    Format: ``PRIVATE+KEY+<name>+<hex key id>+<base64(0x01 || seed)>``.
    """
    kid = key_id(name, public_key_from_seed(seed))
    return (
        f"{_PRIVATE_PREFIX}{name}+{kid.hex()}+{_b64encode(bytes([ALG_ED25519]) + seed)}"
    )


def _parse_key_fields(text: str, alg: int = ALG_ED25519) -> tuple[str, bytes, bytes]:
    """Split ``name+hex8+base64(alg || key)`` into (name, key id, 32-byte key)."""
    # Names and ids never contain '+', but the base64 part may.
    parts = text.split("+", 2)
    if len(parts) != 3:
        raise KeyFormatError("key string must be name+keyid+key")
    name, hex_id, b64 = parts
    if not is_valid_key_name(name):
        raise KeyFormatError("invalid key name")
    if not _HEX8.fullmatch(hex_id):
        raise KeyFormatError("key id must be 8 hex digits")
    try:
        raw = _b64decode_strict(b64)
    except ValueError as exc:
        raise KeyFormatError("invalid key encoding") from exc
    if len(raw) != 1 + PUBLIC_KEY_SIZE or raw[0] != alg:
        raise KeyFormatError(f"only 32-byte Ed25519 keys (type 0x{alg:02x}) are supported here")
    return name, bytes.fromhex(hex_id), raw[1:]


def parse_vkey(vkey_str: str) -> tuple[str, bytes, bytes]:
    """Parse a verifier key into (name, 4-byte key id, 32-byte public key)."""
    name, kid, public_key = _parse_key_fields(vkey_str)
    if key_id(name, public_key) != kid:
        raise KeyFormatError("key id does not match name and public key")
    return name, kid, public_key


def parse_skey(skey_str: str) -> tuple[str, bytes]:
    """Parse a signer key into (name, 32-byte seed), checking its key id."""
    if not skey_str.startswith(_PRIVATE_PREFIX):
        raise KeyFormatError("signer key must start with PRIVATE+KEY+")
    name, kid, seed = _parse_key_fields(skey_str[len(_PRIVATE_PREFIX) :])
    if key_id(name, public_key_from_seed(seed)) != kid:
        raise KeyFormatError("key id does not match name and private key")
    return name, seed


def _check_text(body: str) -> None:
    """Note text must be non-empty UTF-8 ending in newline, without control chars."""
    if not isinstance(body, str) or not body.endswith("\n"):
        raise ValueError("note text must end with a newline")
    if _FORBIDDEN_CONTROL.search(body) or not _is_utf8_encodable(body):
        raise ValueError("note text contains forbidden characters")


def signature_line(body: str, name: str, seed: bytes) -> str:
    """One ``— name base64(...)\\n`` line signing ``body``; used for co-signing too."""
    _check_name(name)
    _check_text(body)
    private = _private_key(seed)
    kid = key_id(name, private.public_key().public_bytes_raw())
    signature = private.sign(body.encode("utf-8"))
    return f"{_SIG_PREFIX}{name} {_b64encode(kid + signature)}\n"


def sign_note(body: str, name: str, seed: bytes) -> str:
    """Return the full signed note: body, blank line, one signature line."""
    return body + "\n" + signature_line(body, name, seed)


def _split_note(note: str) -> tuple[str, list[tuple[str, bytes, bytes]]]:
    """Parse note syntax into (text, [(name, key id, signature)])."""
    if _FORBIDDEN_CONTROL.search(note) or not _is_utf8_encodable(note):
        raise NoteVerificationError("malformed note: forbidden characters")
    # The text ends at the *last* blank line; the text itself may contain blank lines.
    split = note.rfind("\n\n")
    if split < 0:
        raise NoteVerificationError("malformed note: no signature block")
    text, sig_block = note[: split + 1], note[split + 2 :]
    if not sig_block.endswith("\n"):
        raise NoteVerificationError(
            "malformed note: signature block must end with newline"
        )
    lines = sig_block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise NoteVerificationError("malformed note: too many signatures")
    signatures = []
    for line in lines:
        if not line.startswith(_SIG_PREFIX):
            raise NoteVerificationError("malformed note: bad signature line")
        name, sep, b64 = line[len(_SIG_PREFIX) :].partition(" ")
        if not sep or not is_valid_key_name(name):
            raise NoteVerificationError("malformed note: bad signature line")
        try:
            raw = _b64decode_strict(b64)
        except ValueError as exc:
            raise NoteVerificationError(
                "malformed note: bad signature encoding"
            ) from exc
        if len(raw) < 5:
            raise NoteVerificationError("malformed note: signature too short")
        signatures.append((name, raw[:4], raw[4:]))
    return text, signatures


def note_signers(note: str) -> tuple[str, list[tuple[str, bytes]]]:
    """The note's text and the (name, key id) of each of its signature lines,
    signatures NOT checked: to ask who claims to have signed (a key ring
    refuses a key that signed outside its range). Raises NoteVerificationError."""
    text, signatures = _split_note(note)
    return text, [(name, kid) for name, kid, _ in signatures]


def verify_note(note: str | bytes, vkey_str: str) -> str:
    """Verify ``note`` against one verifier key and return the signed text.

    Signatures from other keys are ignored (they may be witness cosignatures).
    Every signature claiming to be from this key must verify, and there must be
    at least one. A malformed ``vkey_str`` raises ``KeyFormatError``.
    """
    name, kid, public_key = parse_vkey(vkey_str)
    if isinstance(note, bytes):
        try:
            note = note.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise NoteVerificationError("malformed note: not UTF-8") from exc
    text, signatures = _split_note(note)
    verifier = Ed25519PublicKey.from_public_bytes(public_key)
    message = text.encode("utf-8")
    verified = False
    for sig_name, sig_kid, signature in signatures:
        if sig_name != name or sig_kid != kid:
            continue
        if len(signature) != SIGNATURE_SIZE:
            raise NoteVerificationError(f"invalid signature for key {name}+{kid.hex()}")
        try:
            verifier.verify(signature, message)
        except InvalidSignature as exc:
            raise NoteVerificationError(
                f"invalid signature for key {name}+{kid.hex()}"
            ) from exc
        verified = True
    if not verified:
        raise NoteVerificationError(f"no signature by key {name}+{kid.hex()}")
    return text


def checkpoint_body(
    origin: str, size: int, root: bytes, extensions: Sequence[str] = ()
) -> str:
    """Checkpoint note text: origin, decimal size, base64 root, extension lines."""
    if not isinstance(origin, str) or not origin or "\n" in origin:
        raise CheckpointFormatError("origin must be a non-empty single line")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise CheckpointFormatError("size must be a non-negative integer")
    if not isinstance(root, bytes) or len(root) != ROOT_HASH_SIZE:
        raise CheckpointFormatError("root hash must be 32 bytes")
    for ext in extensions:
        if not isinstance(ext, str) or not ext or "\n" in ext:
            raise CheckpointFormatError(
                "extension lines must be non-empty single lines"
            )
    lines = [origin, str(size), _b64encode(root), *extensions]
    body = "".join(line + "\n" for line in lines)
    try:
        _check_text(body)
    except ValueError as exc:
        raise CheckpointFormatError(str(exc)) from exc
    return body


def parse_checkpoint(body: str) -> Checkpoint:
    """Strictly parse checkpoint text (e.g. the output of ``verify_note``)."""
    try:
        _check_text(body)
    except ValueError as exc:
        raise CheckpointFormatError(str(exc)) from exc
    lines = body[:-1].split("\n")
    if len(lines) < 3:
        raise CheckpointFormatError("checkpoint needs origin, size and root hash lines")
    origin, size_text, root_text, *extensions = lines
    if not origin:
        raise CheckpointFormatError("origin must be non-empty")
    # [0-9] rather than str.isdigit(), which also accepts non-ASCII digits.
    if not _DECIMAL.fullmatch(size_text):
        raise CheckpointFormatError("size must be decimal without leading zeros")
    try:
        root = _b64decode_strict(root_text)
    except ValueError as exc:
        raise CheckpointFormatError("root hash must be standard base64") from exc
    if len(root) != ROOT_HASH_SIZE:
        raise CheckpointFormatError("root hash must be 32 bytes")
    if any(not ext for ext in extensions):
        raise CheckpointFormatError("extension lines must be non-empty")
    return Checkpoint(origin, int(size_text), root, tuple(extensions))


# --- notes with several signatures: cosigners, witnesses, key rotation ------------
#
# A note may carry any number of signature lines (up to MAX_SIGNATURES): the
# log's own, a witness's cosignature (c2sp.org/tlog-cosignature), the old and
# the new key of a rotation. These helpers read, check and add them without
# caring who signed; the caller says which keys it trusts.

# tlog-cosignature v1: Ed25519 over "cosignature/v1\ntime <t>\n" + note text,
# key id algorithm byte 0x04, signature = 8-byte big-endian time || Ed25519.
ALG_COSIGNATURE_V1 = 0x04
_COSIGNATURE_HEADER = "cosignature/v1\n"
_MAX_TIMESTAMP = 2**63 - 1


class NoteSignature(NamedTuple):
    name: str
    key_id: bytes
    signature: bytes  # raw, after the key id


def note_text(note: str) -> str:
    """The signed text of a note (everything before its signature block)."""
    text, _ = _split_note(note)
    return text


def note_signatures(note: str) -> list[NoteSignature]:
    """Every signature line of a note, in order, whoever made it (unchecked)."""
    _, signatures = _split_note(note)
    return [NoteSignature(*sig) for sig in signatures]


def add_signature_lines(note: str, lines: Sequence[str]) -> str:
    """The note with more signature lines appended (cosignatures, a second key).

    A line already present, or one whose name and key id are already on the
    note, is not added twice; the result is parsed again, so a malformed line
    is refused here rather than stored."""
    text, existing = _split_note(note)
    present = {(name, kid) for name, kid, _ in existing}
    block = note[len(text) + 1 :]
    for line in lines:
        parsed = _split_note("x\n\n" + line)[1]
        if len(parsed) != 1:
            raise NoteVerificationError("malformed note: one signature line expected")
        name, kid, _ = parsed[0]
        if (name, kid) in present:
            continue
        present.add((name, kid))
        block += line
    combined = text + "\n" + block
    _split_note(combined)  # the signature count limit
    return combined


def sign_note_with(body: str, signers: Sequence[tuple[str, bytes]]) -> str:
    """A note signed by several keys at once, e.g. the old and new key of a rotation."""
    if not signers:
        raise ValueError("at least one signer is needed")
    return body + "\n" + "".join(signature_line(body, name, seed) for name, seed in signers)


def verified_signers(note: str, vkeys: Sequence[str]) -> list[str]:
    """The verifier keys among ``vkeys`` that signed ``note`` (each with a valid
    signature); a key whose line is present but does not verify raises, since
    a forged line under a trusted name is an attack, not an absence."""
    signed = []
    for key in vkeys:
        try:
            verify_note(note, key)
        except NoteVerificationError as exc:
            if str(exc).startswith("no signature by key"):
                continue
            raise
        signed.append(key)
    return signed


def cosigner_key_id(name: str, public_key: bytes) -> bytes:
    """SHA-256(name || 0x0A || 0x04 || public key)[:4] (tlog-cosignature)."""
    _check_name(name)
    if len(public_key) != PUBLIC_KEY_SIZE:
        raise ValueError("Ed25519 public key must be 32 bytes")
    material = name.encode("utf-8") + b"\n" + bytes([ALG_COSIGNATURE_V1]) + public_key
    return hashlib.sha256(material).digest()[:4]


def cosigner_vkey(name: str, public_key: bytes) -> str:
    """A witness's verifier key: ``name+keyid+base64(0x04 || pubkey)``."""
    encoded = _b64encode(bytes([ALG_COSIGNATURE_V1]) + public_key)
    return f"{name}+{cosigner_key_id(name, public_key).hex()}+{encoded}"


def parse_cosigner_vkey(vkey_str: str) -> tuple[str, bytes, bytes]:
    """Parse a witness verifier key into (name, key id, 32-byte public key)."""
    if not isinstance(vkey_str, str):
        raise KeyFormatError("witness key must be a string")
    name, kid, public_key = _parse_key_fields(vkey_str, ALG_COSIGNATURE_V1)
    if cosigner_key_id(name, public_key) != kid:
        raise KeyFormatError("key id does not match name and public key")
    return name, kid, public_key


def _cosigned_message(text: str, timestamp: int) -> bytes:
    return f"{_COSIGNATURE_HEADER}time {timestamp}\n{text}".encode()


def cosignature_line(body: str, name: str, seed: bytes, *, timestamp: int) -> str:
    """A witness's ``— name base64(keyid || time || sig)`` line over a checkpoint text."""
    _check_text(body)
    if not isinstance(timestamp, int) or not 0 <= timestamp <= _MAX_TIMESTAMP:
        raise ValueError("timestamp must be a POSIX time in 0..2^63-1")
    private = _private_key(seed)
    kid = cosigner_key_id(name, private.public_key().public_bytes_raw())
    signature = private.sign(_cosigned_message(body, timestamp))
    return f"{_SIG_PREFIX}{name} {_b64encode(kid + timestamp.to_bytes(8, 'big') + signature)}\n"


def verify_cosignature(note: str, cosigner_vkey_str: str) -> int:
    """Check the cosignature of one witness on ``note``; returns its timestamp.

    Raises NoteVerificationError when the witness did not cosign or a line
    under its name and key id does not verify."""
    name, kid, public_key = parse_cosigner_vkey(cosigner_vkey_str)
    text, signatures = _split_note(note)
    verifier = Ed25519PublicKey.from_public_bytes(public_key)
    timestamp = None
    for sig_name, sig_kid, raw in signatures:
        if sig_name != name or sig_kid != kid:
            continue
        if len(raw) != 8 + SIGNATURE_SIZE:
            raise NoteVerificationError(f"invalid cosignature for witness {name}+{kid.hex()}")
        stamp = int.from_bytes(raw[:8], "big")
        try:
            if stamp > _MAX_TIMESTAMP:
                raise InvalidSignature
            verifier.verify(raw[8:], _cosigned_message(text, stamp))
        except InvalidSignature as exc:
            raise NoteVerificationError(f"invalid cosignature for witness {name}+{kid.hex()}") from exc
        timestamp = stamp
    if timestamp is None:
        raise NoteVerificationError(f"no cosignature by witness {name}+{kid.hex()}")
    return timestamp
