"""The key ring of checkpoint verifier keys: which key signed which checkpoints.

Keys rotate (compromise, policy, staff change) without making the past
unverifiable. The ring lists every verifier key the log has used, each with
the range of tree sizes it may sign, and `audit verify` accepts a checkpoint
only under the key(s) of its time:

    {"origin": "veritta.local/audit",
     "keys": [{"vkey": "veritta.local/audit+1a2b3c4d+AX…", "from_size": 0, "to_size": 2001},
              {"vkey": "veritta.local/audit+5e6f7a8b+AY…", "from_size": 2001, "to_size": null}]}

- a checkpoint of size S must carry a valid signature by *every* ring key
  whose range holds S: the handover checkpoint, where one range ends and the
  next begins, is signed by the old key and the new one (C2SP signed notes
  allow several signature lines), so the new key is vouched for by the old;
- a signature line by a ring key whose range does not hold S is refused (a
  retired key, stolen later, cannot sign new history); lines by keys outside
  the ring (witness cosignatures) are ignored, as `signed_note.verify_note` does.

The ring lives in a JSON file outside the database (VERITTA_AUDIT_KEYRING_FILE,
default `keyring.json` in the checkpoint directory): whoever can rewrite the
database must not be able to add a key. Without the file, the ring is the
configured signing key alone, over every size (the behaviour before rotation).
`python manage.py audit rotate-key` writes it (docs/DEPLOYMENT.md, "Rotating
the checkpoint signing key").

The parsing and checking here need no Django: `audit.verify` calls
`verify_checkpoint_note`, which also takes a single verifier key string.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from audit import signed_note


class KeyRingError(ValueError):
    pass


# --- the configured signing key ----------------------------------------------------------


class SigningKeyError(Exception):
    pass


def signing_seed() -> bytes:
    from django.conf import settings

    raw = settings.VERITTA_AUDIT_SIGNING_KEY
    if not raw:
        raise SigningKeyError("VERITTA_AUDIT_SIGNING_KEY is not set")
    try:
        seed = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SigningKeyError("VERITTA_AUDIT_SIGNING_KEY is not base64") from exc
    if len(seed) != signed_note.SEED_SIZE:
        raise SigningKeyError("VERITTA_AUDIT_SIGNING_KEY must decode to 32 bytes")
    return seed


def key_name() -> str:
    from django.conf import settings

    return settings.VERITTA_AUDIT_ORIGIN


def public_vkey() -> str:
    """The verifier key (`name+keyid+base64`) anyone can check checkpoints with."""
    return signed_note.vkey(key_name(), signed_note.public_key_from_seed(signing_seed()))


@dataclass(frozen=True)
class RingKey:
    vkey: str
    from_size: int
    to_size: int | None  # None: the current key, open-ended

    @property
    def signer(self) -> tuple[str, bytes]:
        name, kid, _ = signed_note.parse_vkey(self.vkey)
        return name, kid

    @property
    def key_id(self) -> str:
        return self.signer[1].hex()

    def covers(self, size: int) -> bool:
        return self.from_size <= size and (self.to_size is None or size <= self.to_size)

    def range_text(self) -> str:
        return f"{self.from_size}..{'' if self.to_size is None else self.to_size}"


@dataclass(frozen=True)
class KeyRing:
    keys: tuple[RingKey, ...]

    @classmethod
    def single(cls, vkey: str) -> KeyRing:
        return cls((RingKey(vkey, 0, None),))

    @classmethod
    def from_json(cls, text: str) -> KeyRing:
        try:
            data = json.loads(text)
            keys = tuple(RingKey(str(k["vkey"]), int(k["from_size"]), _size_or_none(k["to_size"])) for k in data["keys"])
        except (ValueError, KeyError, TypeError) as exc:
            raise KeyRingError(f"key ring is not valid: {exc.__class__.__name__}") from exc
        ring = cls(keys)
        ring.check()
        return ring

    def to_json(self) -> str:
        keys = [{"vkey": k.vkey, "from_size": k.from_size, "to_size": k.to_size} for k in self.keys]
        return json.dumps({"keys": keys}, indent=2) + "\n"

    def check(self) -> None:
        """Ranges follow each other, each beginning where the previous ended
        (the shared size is the handover checkpoint); only the last is open."""
        if not self.keys:
            raise KeyRingError("key ring is empty")
        for key in self.keys:
            signed_note.parse_vkey(key.vkey)  # KeyFormatError is a ValueError
        for before, after in zip(self.keys, self.keys[1:], strict=False):
            if before.to_size is None or after.from_size != before.to_size:
                raise KeyRingError(f"key {after.key_id} must begin where key {before.key_id} ended")
        if len({k.signer for k in self.keys}) != len(self.keys):
            raise KeyRingError("a key appears twice in the ring")

    @property
    def current(self) -> RingKey:
        return self.keys[-1]

    def key_for(self, vkey: str) -> RingKey | None:
        return next((k for k in self.keys if k.vkey == vkey), None)

    def rotated(self, new_vkey: str, *, at_size: int) -> KeyRing:
        """The ring after a handover at `at_size`: the current key ends there,
        the new one begins there."""
        current = self.current
        if current.to_size is not None or at_size < current.from_size:
            raise KeyRingError("the current key cannot end before it began")
        ring = KeyRing((*self.keys[:-1], replace(current, to_size=at_size), RingKey(new_vkey, at_size, None)))
        ring.check()
        return ring

    def verify(self, note: str) -> str:
        """The signed text of a checkpoint note that this ring accepts for its
        size; raises NoteVerificationError naming the key that failed."""
        text, signers = signed_note.note_signers(note)
        size = signed_note.parse_checkpoint(text).size
        due = [k for k in self.keys if k.covers(size)]
        if not due:
            raise signed_note.NoteVerificationError(f"no key of the ring may sign size {size}")
        for key in due:
            signed_note.verify_note(note, key.vkey)
        for key in self.keys:
            if key not in due and key.signer in signers:
                raise signed_note.NoteVerificationError(
                    f"signed by key {key.key_id}, which may sign sizes {key.range_text()} only"
                )
        return text


def _size_or_none(value: Any) -> int | None:
    return None if value is None else int(value)


def verify_checkpoint_note(note: str, keys: str | KeyRing) -> str:
    """`audit verify`'s signature check: under one verifier key (any size), or
    under the ring's key(s) for the checkpoint's size."""
    if isinstance(keys, KeyRing):
        return keys.verify(note)
    return signed_note.verify_note(note, keys)


# --- the configured ring (Django settings) -------------------------------------------


def keyring_path() -> Path:
    from django.conf import settings

    configured = settings.VERITTA_AUDIT_KEYRING_FILE
    return Path(configured) if configured else Path(settings.VERITTA_AUDIT_CHECKPOINT_DIR) / "keyring.json"


def keyring_from_file(path: Path | None = None) -> KeyRing | None:
    path = path or keyring_path()
    if not path.is_file():
        return None
    return KeyRing.from_json(path.read_text(encoding="utf-8"))


def configured_keyring() -> KeyRing | None:
    """The ring file, or else the configured signing key alone; None without either."""
    import logging

    try:
        ring = keyring_from_file()
    except (KeyRingError, OSError) as exc:
        # Fail closed: a ring with no key accepts no checkpoint, so every one
        # is reported as a `signature` problem instead of being trusted.
        logging.getLogger("veritta.audit").error("key ring file cannot be read", extra={"cause": str(exc)})
        return KeyRing(())
    if ring is not None:
        return ring
    try:
        return KeyRing.single(public_vkey())
    except SigningKeyError:
        return None


def write_keyring(ring: KeyRing, path: Path | None = None) -> None:
    path = path or keyring_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(ring.to_json(), encoding="utf-8")
    os.replace(tmp, path)  # atomic: a server reads the old ring or the new one


def may_sign(vkey: str, size: int) -> str | None:
    """Why the configured key may not sign a checkpoint of `size` under the ring
    file, or None. A server still running with a retired key stops sealing at
    the handover instead of writing checkpoints `audit verify` would refuse."""
    try:
        ring = keyring_from_file()
    except (KeyRingError, OSError) as exc:  # unreadable: sign nothing rather than guess
        return f"the key ring file cannot be read ({exc})"
    if ring is None:
        return None
    key = ring.key_for(vkey)
    if key is None:
        return f"the signing key {signed_note.parse_vkey(vkey)[1].hex()} is not in the key ring"
    if not key.covers(size):
        return f"the signing key {key.key_id} may sign sizes {key.range_text()} only (rotated)"
    return None
