"""A second verifier of exports, written from docs/AUDIT_LOG_SPEC.md alone
(§2–§5 and §7), with nothing of the project's code: the standard library and
`cryptography`'s Ed25519. The tamper matrix runs it beside `audit verify
--file` on every case; where they disagree, the specification is not complete
enough to reimplement from, or the verifier does not do what it says.

It keeps the whole file in memory: it is a check of the text, not a tool.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

ZEROS = "0" * 64
SEQ_IN_DAMAGED_LINE = re.compile(r'"seq":(\d+)[,}]')


def canonical(obj: Any) -> bytes:  # §2
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def leaf(data: bytes) -> bytes:  # §4
    return hashlib.sha256(b"\x00" + data).digest()


def node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


class Tree:
    """RFC 6962 root over leaves appended one by one: the perfect subtrees of
    the size's set bits, largest first (the anchor's `before` is this state)."""

    def __init__(self, size: int = 0, frontier: list[bytes] | None = None) -> None:
        self.size, self.frontier = size, list(frontier or [])

    def copy(self) -> Tree:
        return Tree(self.size, self.frontier)

    def add(self, record_hash_hex: str) -> None:
        h, n = leaf(bytes.fromhex(record_hash_hex)), self.size
        while n & 1:
            h = node(self.frontier.pop(), h)
            n >>= 1
        self.frontier.append(h)
        self.size += 1

    def root(self) -> bytes:
        if not self.frontier:
            return hashlib.sha256(b"").digest()
        h = self.frontier[-1]
        for left in reversed(self.frontier[:-1]):
            h = node(left, h)
        return h


def signed_text(note: str, vkey: str) -> str | None:
    """§5: the text of a note if a signature line by this key verifies."""
    name, key_id_hex, key_b64 = vkey.split("+")
    public = base64.b64decode(key_b64)[1:]
    if "\n\n" not in note:
        return None
    text, signatures = note.split("\n\n", 1)
    text += "\n"
    for line in signatures.splitlines():
        parts = line.split(" ")
        if len(parts) != 3 or parts[0] != "\u2014" or parts[1] != name:
            continue
        raw = base64.b64decode(parts[2])
        if raw[:4].hex() != key_id_hex:
            continue
        try:
            Ed25519PublicKey.from_public_bytes(public).verify(raw[4:], text.encode())
            return text
        except InvalidSignature:
            return None
    return None


def checkpoint_of(note: str, vkey: str) -> tuple[int, bytes] | None:
    text = signed_text(note, vkey)
    if text is None:
        return None
    lines = text.split("\n")
    try:
        return int(lines[1]), base64.b64decode(lines[2], validate=True)
    except (IndexError, ValueError):
        return None


@dataclass
class Result:
    problems: list[tuple[int, str, str | None]] = field(default_factory=list)  # (seq, kind, source)
    anchored_upto: int = 0
    last: int | None = None

    def status(self) -> str:
        if self.problems:
            return "failed"
        return "ok" if self.last is not None and self.anchored_upto >= self.last else "unanchored"


def verify_export(export: Path, vkey: str, *, anchor: Path | None = None, checkpoints: Path | None = None) -> Result:
    result = Result()
    roots: dict[int, bytes] = {}
    sealed: dict[int, str] = {}
    start: Tree | None = None
    extent: tuple[int, int] | None = None

    if checkpoints is not None:  # §5, "Checkpoint material is checked before it is used"
        for path in sorted(checkpoints.glob("*.note")):
            cp = checkpoint_of(path.read_text(), vkey)
            if cp is None:
                size = path.read_text().split("\n")[1]
                result.problems.append((int(size) if size.isdigit() else 0, "signature", str(path)))
            else:
                roots[cp[0]] = cp[1]
        tree: Tree | None = Tree()
        waiting: dict[int, str] = {}
        files: list[str] = []
        for path in sorted(checkpoints.glob("*.hashes")):
            lines = path.read_text().splitlines()
            size = int(path.stem)
            if tree is None or tree.size != size - len(lines):
                tree = None
                continue
            for offset, h in enumerate(lines):
                tree.add(h)
                waiting[size - len(lines) + 1 + offset] = h
            files.append(str(path))
            if size in roots:
                if tree.root() == roots[size]:
                    sealed.update(waiting)
                else:
                    result.problems.append((size, "signature", ", ".join(files)))
                    tree = None
                waiting, files = {}, []

    if anchor is not None:  # §7, "Exports and their anchor"
        header, *anchor_hashes = anchor.read_text().splitlines()
        doc = json.loads(header)
        first, last = doc["first_seq"], doc["last_seq"]
        cp = checkpoint_of(doc["checkpoint"], vkey)
        text = signed_text(doc["extent"], vkey)
        good = cp is not None and text is not None
        if good:
            size = cp[0]
            good = text.split("\n")[1:5] == ["veritta-export/v1", str(first), str(last), str(size)]
            good = good and 1 <= first <= last <= size and doc["before"]["size"] == first - 1
            good = good and len(anchor_hashes) == size - first + 1
        if good:
            before = Tree(first - 1, [bytes.fromhex(h) for h in doc["before"]["frontier"]])
            check = before.copy()
            for h in anchor_hashes:
                check.add(h)
            good = check.root() == cp[1]
        if good:
            roots[cp[0]] = cp[1]
            sealed = {first + i: h for i, h in enumerate(anchor_hashes)}
            start, extent = before, (first, last)
        else:
            result.problems.append((first, "signature", str(anchor)))

    # §7, "Reading the records, one by one"
    expected = extent[0] if extent else 1
    gaps: list[tuple[int, int]] = []
    seen: dict[int, str] = {}
    pending: dict[str, int] = {}
    tree = None
    named_by_sealed = False
    lines = export.read_bytes().split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    for raw in lines:
        line = raw.decode("utf-8", errors="replace")
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if isinstance(record, dict):
            seq = record.get("seq")
            seq = seq if isinstance(seq, int) and not isinstance(seq, bool) else None
        else:
            hint = SEQ_IN_DAMAGED_LINE.search(line)
            seq = int(hint.group(1)) if hint else None
        if seq is None:
            result.problems.append((expected, "content", None))
            tree = None
            continue
        # 1. place
        if seq == expected:
            if seq == 1:
                tree = Tree()
            elif start is not None and result.last is None:
                tree = start.copy()
            expected = seq + 1
        elif seq > expected:
            result.problems.append((expected, "gap", None))
            gaps.append((expected, seq - 1))
            tree = None
            expected = seq + 1
        else:
            run = next((g for g in gaps if g[0] <= seq <= g[1]), None)
            if run is not None:
                result.problems.remove((run[0], "gap", None))
                result.problems.append((run[0], "link", None))
                gaps.remove(run)
            else:
                result.problems.append((expected, "link", None))
            continue
        result.last = seq
        if not isinstance(record, dict):
            result.problems.append((seq, "content", None))
            tree = None
            continue
        # 2. content
        stored = record.get("record_hash")
        hashed = hashlib.sha256(canonical({k: v for k, v in record.items() if k != "record_hash"})).hexdigest()
        if hashed != stored or canonical(record) != raw:
            result.problems.append((seq, "content", None))
        # 3. link
        previous = ZEROS if seq == 1 else seen.get(seq - 1)
        if previous is not None and record.get("prev_hash") != previous:
            result.problems.append((seq, "link", None))
        seen[seq] = stored
        # 4. sealed hash
        if seq in sealed and sealed[seq] != stored:
            result.problems.append((seq, "signature", None))
            named_by_sealed = True
        # 5. completeness (§3.4)
        if record.get("event_type") == "action_audit":
            trace = record.get("trace_id")
            if record.get("status") == "PENDING":
                if trace in pending:
                    result.problems.append((seq, "incomplete", None))
                pending[trace] = seq
            elif record.get("status") in ("SUCCESS", "FAILED") and pending.pop(trace, None) is None:
                result.problems.append((seq, "incomplete", None))
            elif record.get("status") == "BLOCKED":
                pending.pop(trace, None)
        # 6. root
        if tree is not None:
            tree.add(stored)
            if tree.size in roots:
                if tree.root() == roots[tree.size]:
                    result.anchored_upto = seq
                elif not named_by_sealed:
                    result.problems.append((tree.size, "signature", None))

    result.problems += [(seq, "incomplete", None) for seq in pending.values()]
    last = result.last if result.last is not None else expected - 1
    if extent is not None:
        if last < extent[1]:
            result.problems.append((max(last + 1, extent[0]), "gap", None))
        elif last > extent[1]:
            result.problems.append((extent[1] + 1, "signature", None))
    elif roots and max(roots) > last:
        result.problems.append((last + 1, "gap", None))
    later = sorted(size for size in roots if size > last)
    if tree is not None and later and result.anchored_upto < last:
        tail = tree.copy()
        while tail.size < later[0] and tail.size + 1 in sealed:
            tail.add(sealed[tail.size + 1])
        if tail.size == later[0] and tail.root() == roots[later[0]]:
            result.anchored_upto = last
    return result
