"""The checks, with no I/O: signed notes, checkpoints, cosignatures, Merkle
proofs and record hashes. Every function either returns what it proved or
raises Rejected with the reason, in words a person can act on.

References: c2sp.org/signed-note, c2sp.org/tlog-checkpoint,
c2sp.org/tlog-cosignature, RFC 9162 §2.1.3.2 and §2.1.4.2 (the verification
algorithms for RFC 6962 trees), docs/AUDIT_LOG_SPEC.md (record hashes).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

ALG_ED25519 = 0x01
ALG_COSIGNATURE_V1 = 0x04
MAX_SIGNATURES = 100
_SIG_PREFIX = "\u2014 "  # EM DASH, SPACE
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f]")
_DECIMAL = re.compile(r"0|[1-9][0-9]*")
_HEX64 = re.compile(r"[0-9a-f]{64}")
# The fields only the chain writer gives a record; the entry hash leaves them out.
CHAIN_FIELDS = frozenset({"prev_hash", "record_hash", "seq", "ts_utc"})


class Rejected(Exception):
    """The thing checked is not what it claims: the message says why."""


# --- encodings ---------------------------------------------------------------


def _b64(text: str, what: str) -> bytes:
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error) as exc:
        raise Rejected(f"{what} is not base64") from exc
    if base64.b64encode(raw).decode("ascii") != text:
        raise Rejected(f"{what} is not canonical base64")
    return raw


def _hash32(text: Any, what: str) -> bytes:
    if not isinstance(text, str) or not _HEX64.fullmatch(text):
        raise Rejected(f"{what} is not 64 lowercase hex digits")
    return bytes.fromhex(text)


def canonical_json(obj: Any) -> bytes:
    """The canonical JSON the log hashes (docs/AUDIT_LOG_SPEC.md §2)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def record_hash(record: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json({k: v for k, v in record.items() if k != "record_hash"})).hexdigest()


def entry_hash(record: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json({k: v for k, v in record.items() if k not in CHAIN_FIELDS})).hexdigest()


# --- keys ----------------------------------------------------------------------


@dataclass(frozen=True)
class Key:
    name: str
    key_id: bytes
    public_key: Ed25519PublicKey
    text: str


def parse_key(text: str, alg: int, what: str) -> Key:
    """A verifier key ``name+hex keyid+base64(alg || 32-byte Ed25519 key)``."""
    parts = text.strip().split("+", 2) if isinstance(text, str) else []
    if len(parts) != 3:
        raise Rejected(f"{what} is not name+keyid+key")
    name, hex_id, b64 = parts
    if not name or any(ch.isspace() for ch in name) or not re.fullmatch(r"[0-9a-fA-F]{8}", hex_id):
        raise Rejected(f"{what} has a bad name or key id")
    raw = _b64(b64, what)
    if len(raw) != 33 or raw[0] != alg:
        kind = "log key (type 0x01)" if alg == ALG_ED25519 else "witness key (type 0x04, tlog-cosignature)"
        raise Rejected(f"{what} is not an Ed25519 {kind}")
    kid = hashlib.sha256(name.encode("utf-8") + b"\n" + raw).digest()[:4]
    if kid != bytes.fromhex(hex_id):
        raise Rejected(f"{what}: key id does not match its name and public key")
    return Key(name, kid, Ed25519PublicKey.from_public_bytes(raw[1:]), text.strip())


# --- notes and checkpoints --------------------------------------------------------


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes
    text: str


def split_note(note: str) -> tuple[str, list[tuple[str, bytes, bytes]]]:
    """(signed text, [(name, key id, signature bytes)]) of a C2SP signed note."""
    if not isinstance(note, str) or _CONTROL.search(note):
        raise Rejected("the note is malformed (control characters)")
    split = note.rfind("\n\n")
    if split < 0 or not note.endswith("\n"):
        raise Rejected("the note is malformed (no signature block)")
    text, block = note[: split + 1], note[split + 2 : -1]
    lines = block.split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise Rejected("the note has too many signatures")
    signatures = []
    for line in lines:
        name, sep, b64 = line[len(_SIG_PREFIX) :].partition(" ")
        if not line.startswith(_SIG_PREFIX) or not sep or not name:
            raise Rejected("the note has a malformed signature line")
        raw = _b64(b64, "a signature")
        if len(raw) < 5:
            raise Rejected("the note has a truncated signature")
        signatures.append((name, raw[:4], raw[4:]))
    return text, signatures


def verify_log_signature(note: str, key: Key) -> str:
    """The note's text, if the log key signed it; every line claiming that key must verify."""
    text, signatures = split_note(note)
    found = False
    for name, kid, signature in signatures:
        if (name, kid) != (key.name, key.key_id):
            continue
        try:
            key.public_key.verify(signature, text.encode("utf-8"))
        except InvalidSignature as exc:
            raise Rejected(f"the checkpoint's signature by {key.name} is invalid (forged or altered checkpoint)") from exc
        found = True
    if not found:
        raise Rejected(f"the checkpoint is not signed by the log key {key.name}+{key.key_id.hex()} (wrong key?)")
    return text


def verify_cosignature(note: str, key: Key) -> int:
    """The POSIX time of the witness's valid cosignature on the note (tlog-cosignature v1)."""
    text, signatures = split_note(note)
    stamp = None
    for name, kid, raw in signatures:
        if (name, kid) != (key.name, key.key_id):
            continue
        when = int.from_bytes(raw[:8], "big")
        message = f"cosignature/v1\ntime {when}\n{text}".encode()
        try:
            if len(raw) != 72 or when > 2**63 - 1:
                raise InvalidSignature
            key.public_key.verify(raw[8:], message)
        except InvalidSignature as exc:
            raise Rejected(f"the cosignature of witness {key.name} is invalid") from exc
        stamp = when
    if stamp is None:
        raise Rejected(f"the checkpoint is not cosigned by witness {key.name}+{key.key_id.hex()}")
    return stamp


def parse_checkpoint(text: str) -> Checkpoint:
    lines = text[:-1].split("\n") if text.endswith("\n") else []
    if len(lines) < 3 or not lines[0] or not _DECIMAL.fullmatch(lines[1]):
        raise Rejected("the note is not a checkpoint (origin, size, root hash)")
    root = _b64(lines[2], "the checkpoint's root hash")
    if len(root) != 32:
        raise Rejected("the checkpoint's root hash is not 32 bytes")
    return Checkpoint(lines[0], int(lines[1]), root, text)


def verified_checkpoint(note: str, log_key: Key, witness_keys: list[Key]) -> tuple[Checkpoint, dict[str, int]]:
    """The checkpoint a note carries, signed by the log and cosigned by every witness given."""
    checkpoint = parse_checkpoint(verify_log_signature(note, log_key))
    if checkpoint.origin != log_key.name:
        raise Rejected(f"the checkpoint is for log {checkpoint.origin!r}, not {log_key.name!r}")
    cosigned = {key.name: verify_cosignature(note, key) for key in witness_keys}
    return checkpoint, cosigned


# --- Merkle proofs (RFC 9162) ----------------------------------------------------------


def _leaf(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def inclusion_root(leaf_hash: bytes, index: int, size: int, proof: list[bytes]) -> bytes:
    """RFC 9162 §2.1.3.2: the root the audit path leads to. The proof's length
    is bound to (index, size): a path one node too long or too short is refused."""
    if not 0 <= index < size:
        raise Rejected(f"leaf index {index} is outside a tree of {size}")
    fn, sn, r = index, size - 1, leaf_hash
    for p in proof:
        if sn == 0:
            raise Rejected("the inclusion proof is longer than the path of this leaf in this tree")
        if fn & 1 or fn == sn:
            r = _node(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = _node(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise Rejected("the inclusion proof is shorter than the path of this leaf in this tree")
    return r


def check_consistency(old_size: int, new_size: int, proof: list[bytes], old_root: bytes, new_root: bytes) -> None:
    """RFC 9162 §2.1.4.2; raises Rejected unless the new tree extends the old."""
    if not 0 <= old_size <= new_size:
        raise Rejected(f"a tree of {new_size} cannot extend one of {old_size}")
    if old_size == new_size:
        if proof or old_root != new_root:
            raise Rejected("two checkpoints of the same size have different roots: a fork")
        return
    if old_size == 0:
        if proof:
            raise Rejected("a consistency proof from the empty tree must be empty")
        return
    if not proof:
        raise Rejected("the consistency proof is empty")
    path = list(proof)
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise Rejected("the consistency proof is longer than it can be")
        if fn & 1 or fn == sn:
            fr, sr = _node(c, fr), _node(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = _node(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise Rejected("the consistency proof is shorter than it must be")
    if fr != old_root:
        raise Rejected("the proof does not lead to the older checkpoint's root: the log was rewritten")
    if sr != new_root:
        raise Rejected("the proof does not lead to the newer checkpoint's root: not an extension")


# --- the two questions a client asks -------------------------------------------------------


def _receipt_of(receipt: Any) -> dict[str, Any]:
    """The `audit` object of a /process answer, given the whole answer or the object."""
    if isinstance(receipt, dict) and isinstance(receipt.get("audit"), dict):
        return {**receipt["audit"], "trace_id": receipt.get("trace_id")}
    if isinstance(receipt, dict):
        return receipt
    raise Rejected("the receipt is not a JSON object")


def _hashes(values: Any, what: str) -> list[bytes]:
    if not isinstance(values, list):
        raise Rejected(f"{what} is not a list of hashes")
    return [_hash32(v, what) for v in values]


def check_inclusion(receipt: Any, proof: Any, note: str, log_key: Key, witness_keys: list[Key]) -> str:
    """Yes (a sentence saying what was proved) or Rejected: the receipt's
    record is leaf seq-1 of the tree the log signed in `note`."""
    checkpoint, cosigned = verified_checkpoint(note, log_key, witness_keys)
    wanted = _receipt_of(receipt)
    if not isinstance(proof, dict) or not isinstance(proof.get("records"), list):
        raise Rejected("the proof is not an inclusion proof document")
    if proof.get("tree_size") != checkpoint.size:
        raise Rejected(f"the proof is for a tree of {proof.get('tree_size')} records, the checkpoint for {checkpoint.size}")
    seq, rhash, ehash = wanted.get("seq"), wanted.get("record_hash"), wanted.get("entry_hash")
    match = None
    for item in proof["records"]:
        body = item.get("body") if isinstance(item, dict) else None
        if not isinstance(body, dict):
            continue
        if seq is not None and rhash is not None:
            if body.get("seq") == seq and record_hash(body) == rhash:
                match = item
        elif ehash is not None and entry_hash(body) == ehash:
            match = item
    if match is None:
        raise Rejected("no record in the proof is the one the receipt names (its seq and record hash, or its entry hash)")
    body = match["body"]
    if wanted.get("trace_id") and body.get("trace_id") != wanted["trace_id"]:
        raise Rejected("the proven record belongs to another request (trace id differs)")
    digest = record_hash(body)
    if match.get("record_hash") != digest:
        raise Rejected("the record's body does not hash to the record hash the proof gives")
    record_seq = body.get("seq")
    if not isinstance(record_seq, int) or isinstance(record_seq, bool) or record_seq < 1:
        raise Rejected("the record has no valid seq")
    # The leaf index comes from the record's own seq, never from the proof's say-so.
    root = inclusion_root(_leaf(bytes.fromhex(digest)), record_seq - 1, checkpoint.size, _hashes(match.get("proof"), "the audit path"))
    if root != checkpoint.root:
        raise Rejected("the audit path does not lead to the signed root (a wrong or reordered sibling, or another tree)")
    witnesses = f", cosigned by {', '.join(sorted(cosigned))}" if cosigned else ""
    return f"record seq {record_seq} (trace {body.get('trace_id')}) is in the log {checkpoint.origin} at tree size {checkpoint.size}{witnesses}"


def check_consistency_document(document: Any, log_key: Key, witness_keys: list[Key], kept: str | None = None) -> str:
    """Yes or Rejected: the newer checkpoint of a consistency answer extends the older."""
    if not isinstance(document, dict) or not all(isinstance(document.get(k), dict) for k in ("first", "second")):
        raise Rejected("the document is not a consistency proof")
    old, _ = verified_checkpoint(document["first"].get("note", ""), log_key, [])
    new, cosigned = verified_checkpoint(document["second"].get("note", ""), log_key, witness_keys)
    if kept is not None:
        mine, _ = verified_checkpoint(kept, log_key, [])
        if (mine.size, mine.root) != (old.size, old.root):
            raise Rejected(f"the older checkpoint is not the one you kept (size {mine.size}): ask for a proof from it")
    check_consistency(old.size, new.size, _hashes(document.get("proof"), "the consistency proof"), old.root, new.root)
    witnesses = f", cosigned by {', '.join(sorted(cosigned))}" if cosigned else ""
    return f"the log {new.origin} at size {new.size} extends its checkpoint at size {old.size}{witnesses}"
