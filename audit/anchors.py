"""What ties records read offline to signed checkpoints, checked before it is
used (docs/AUDIT_LOG_SPEC.md §5, §7). No Django: `audit verify --file` runs
without a database.

- A checkpoint directory: its `.hashes` files are used only once they, with
  everything before them, reproduce the root of a verified checkpoint. One
  that does not is itself the problem (`signature`, naming the file), and no
  record is ever judged by it.
- An export's anchor (`EXPORT.anchor`, written by `audit export`): a first
  line of JSON with the signed extent of the export (first and last seq), the
  checkpoint it was cut under and the Merkle state of the records before it,
  then the sealed hashes from its first record to that checkpoint, one a
  line (read twice, streaming: memory stays flat whatever the export's size),
  all checked against the signed root.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from audit import signed_note
from audit.keyring import KeyRing
from audit.merkle import CompactRange
from audit.verify import Problem, SignedCheckpoint, read_checkpoint_note

ANCHOR_FORMAT = "veritta-export-anchor/v1"
EXTENT_TAG = "veritta-export/v1"
_HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass
class Anchors:
    """Checked material: the checkpoints, the problems found in the material
    itself, and where the sealed hashes that passed can be read again."""

    checkpoints: list[SignedCheckpoint] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    sealed_files: list[Path] = field(default_factory=list)
    start: CompactRange | None = None  # an export's: the records before its first
    extent: tuple[int, int] | None = None  # an export's signed (first, last)
    anchor_file: Path | None = None  # an export's anchor, once it passed

    def sealed(self) -> Iterator[tuple[int, str]]:
        """(seq, hash) pairs vouched for by a verified root, in seq order."""
        if self.anchor_file is not None and self.extent is not None:
            yield from enumerate(_anchor_hashes(self.anchor_file), start=self.extent[0])
            return
        for path in self.sealed_files:
            lines = _hash_lines(path)
            first = int(path.stem) - len(lines) + 1
            yield from enumerate(lines, start=first)


def _hash_lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def checkpoints_read(
    notes: Iterable[tuple[str, str]],
    vkey: str | KeyRing | None,
    *,
    directory: Path | None = None,
    frontiers: dict[int, dict[str, Any]] | None = None,
) -> Anchors:
    """Check every note's signature, then the directory's `.hashes` files
    against the verified roots. `frontiers` (the database's stored Merkle
    states by size) let the check resume after a bad file: a state is used
    only if it reproduces the verified root of its size."""
    anchors = Anchors()
    for source, note in notes:
        result = read_checkpoint_note(note, source, vkey)
        if isinstance(result, Problem):
            anchors.problems.append(result)
        else:
            anchors.checkpoints.append(result)
    if directory is None or not directory.is_dir():
        return anchors
    roots: dict[int, bytes] = {}
    for cp in anchors.checkpoints:
        if cp.verified:
            roots.setdefault(cp.size, cp.root)
    tree: CompactRange | None = CompactRange()
    unproven: list[Path] = []  # read, awaiting a verified root to vouch for them
    for path in sorted(directory.glob("*.hashes")):
        size, leaves = _hashes_file(path, anchors)
        if size is None:
            tree, unproven = None, []
            continue
        if tree is None or tree.size != size - len(leaves):
            tree = _resume(size - len(leaves), roots, frontiers)
            if tree is None:
                anchors.warnings.append(f"{path}: not used: the sealed hashes before it could not be checked")
                continue
            unproven = []
        for leaf in leaves:
            tree.append(leaf)
        unproven.append(path)
        if size not in roots:
            continue
        if tree.root() == roots[size]:
            anchors.sealed_files += unproven
        else:
            # Files read since the last verified root are checked together:
            # any of them may be the wrong one, and each is named.
            files = ", ".join(str(p) for p in unproven)
            anchors.problems.append(
                Problem(size, "signature", f"{files}: the sealed hashes do not reproduce the signed root of checkpoint {size}", files)
            )
            tree = None
        unproven = []
    anchors.warnings += [f"{p}: not used: no verified checkpoint vouches for it" for p in unproven]
    return anchors


def _hashes_file(path: Path, anchors: Anchors) -> tuple[int | None, list[bytes]]:
    """(checkpoint size, the 32-byte hashes) of a well-formed file: lines of
    64 lowercase hex, each ending with a newline. A malformed one is a problem."""
    try:
        size = int(path.stem)
        data = path.read_bytes()
    except (ValueError, OSError) as exc:
        anchors.problems.append(Problem(0, "signature", f"{path}: unreadable: {exc}", str(path)))
        return None, []
    count = len(data) // 65
    # One parse for the whole file (a hash a line): this runs over every sealed hash.
    well_formed = 0 < count <= size and len(data) == 65 * count and data[64::65] == b"\n" * count
    well_formed = well_formed and data.count(b"\n") == count and data == data.lower()
    try:
        raw = bytes.fromhex(data.decode("ascii").replace("\n", "")) if well_formed else b""
    except (UnicodeDecodeError, ValueError):
        raw = b""
    if len(raw) != 32 * count or not raw:
        anchors.problems.append(Problem(size, "signature", f"{path}: not one 64-hex record hash a line", str(path)))
        return None, []
    return size, [raw[i : i + 32] for i in range(0, len(raw), 32)]


def _resume(size: int, roots: dict[int, bytes], frontiers: dict[int, dict[str, Any]] | None) -> CompactRange | None:
    if size == 0:
        return CompactRange()
    state = (frontiers or {}).get(size)
    if state is None or size not in roots:
        return None
    try:
        tree = CompactRange.from_json(state)
    except (TypeError, ValueError):
        return None
    return tree if tree.size == size and tree.root() == roots[size] else None


# --- an export's anchor -------------------------------------------------------------


def extent_text(origin: str, first: int, last: int, checkpoint_size: int) -> str:
    """The signed statement of an export's extent. Its second line is not a
    decimal, so no checkpoint parser mistakes it for a tree head."""
    return f"{origin}\n{EXTENT_TAG}\n{first}\n{last}\n{checkpoint_size}\n"


def _anchor_hashes(path: Path) -> Iterator[str]:
    with path.open(encoding="utf-8") as handle:
        handle.readline()  # the header
        for line in handle:
            yield line.rstrip("\n")


def anchor_read(path: Path, vkey: str | KeyRing | None) -> Anchors:
    """Check an export's anchor file; any failure is a `signature` problem
    naming the file, and nothing of it is used."""
    anchors = Anchors()
    source = str(path)
    try:
        with path.open(encoding="utf-8") as handle:
            header = json.loads(handle.readline())
        first, last = int(header["first_seq"]), int(header["last_seq"])
        note, extent, before = str(header["checkpoint"]), str(header["extent"]), header["before"]
        if header.get("format") != ANCHOR_FORMAT:
            raise ValueError(f"format is not {ANCHOR_FORMAT}")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        anchors.problems.append(Problem(0, "signature", f"{source}: not an export anchor: {exc}", source))
        return anchors
    if not vkey:
        anchors.warnings.append(f"{source}: not used: no verifier key to check its signatures")
        return anchors
    checkpoint = read_checkpoint_note(note, f"{source} (checkpoint)", vkey)
    if isinstance(checkpoint, Problem):
        anchors.problems.append(Problem(first, "signature", checkpoint.detail, source))
        return anchors
    try:
        failure = _anchor_failure(checkpoint, first, last, extent, before, _anchor_hashes(path), vkey)
    except (OSError, UnicodeDecodeError) as exc:
        failure = f"unreadable: {exc}"
    if failure:
        anchors.problems.append(Problem(first, "signature", f"{source}: {failure}", source))
        return anchors
    anchors.checkpoints.append(checkpoint)
    anchors.start = CompactRange.from_json(before)
    anchors.extent = (first, last)
    anchors.anchor_file = path
    return anchors


def _anchor_failure(
    checkpoint: SignedCheckpoint, first: int, last: int, extent: str, before: Any, hashes: Iterator[str], vkey: str | KeyRing
) -> str | None:
    """Why the anchor cannot be trusted, or None."""
    # Signed with the key that signed the checkpoint it names (audit export
    # signs both at once): with a key ring, a key whose range holds that size.
    keys = [vkey] if isinstance(vkey, str) else [k.vkey for k in vkey.keys if k.covers(checkpoint.size)]
    text, failure = None, "no key of the ring may sign its checkpoint's size"
    for key in keys:
        try:
            text = signed_note.verify_note(extent, key)
            break
        except (signed_note.NoteVerificationError, ValueError) as exc:
            failure = str(exc)
    if text is None:
        return f"extent: {failure}"
    lines = text.split("\n")
    if len(lines) != 6 or lines[1] != EXTENT_TAG or lines[2:5] != [str(first), str(last), str(checkpoint.size)]:
        return "the signed extent does not match the anchor's first, last and checkpoint"
    if not 1 <= first <= last <= checkpoint.size:
        return f"extent {first}..{last} is not within checkpoint {checkpoint.size}"
    try:
        tree = CompactRange.from_json(before)
    except (TypeError, ValueError) as exc:
        return f"before: {exc}"
    if tree.size != first - 1:
        return "the Merkle state before the export is not of its first seq - 1"
    for h in hashes:
        if not _HEX64.fullmatch(h):
            return "a sealed hash is not 64 lowercase hex"
        tree.append(bytes.fromhex(h))
    if tree.size != checkpoint.size:
        return "the sealed hashes do not span the records up to the checkpoint"
    if tree.root() != checkpoint.root:
        return f"the sealed hashes do not reproduce the signed root of checkpoint {checkpoint.size}"
    return None


def anchor_header(*, first: int, last: int, checkpoint_note: str, before: CompactRange, extent: str) -> str:
    """The anchor's first line; the sealed hashes follow, one a line."""
    header = {
        "format": ANCHOR_FORMAT,
        "first_seq": first,
        "last_seq": last,
        "checkpoint": checkpoint_note,
        "extent": extent,
        "before": before.to_json(),
    }
    return json.dumps(header, sort_keys=True) + "\n"
