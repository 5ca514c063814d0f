"""A witness of a Verittà log (issue 15): `python manage.py audit witness`.

A separate process, normally run by another party, with its own Ed25519 key
and its own state file (the last checkpoint it cosigned). No database: it
speaks to the log over HTTP only. Each round it

1. fetches the latest checkpoint and checks the log's signature (the log's
   verifier key is pinned in its configuration, never learnt from the log);
2. if it has cosigned before: a smaller tree is a rollback, the same size
   with another root a fork; a larger one must come with a consistency proof
   from its last cosigned checkpoint (RFC 6962) that verifies against the
   root it kept;
3. writes the new checkpoint to its state file *before* handing out the
   cosignature (so it never cosigns two views that conflict), then posts the
   C2SP tlog-cosignature line to the log.

A checkpoint that fails any of these is refused: the witness keeps its state,
reports the refusal to the log (which raises the `witness_refused` alert)
and raises its own (an `ALERT` line on stderr and exit status 3).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from audit import signed_note
from audit.merkle import verify_consistency

REFUSAL_PROBLEMS = ("rollback", "fork", "inconsistent", "bad_signature")
TIMEOUT_S = 30


class WitnessError(Exception):
    """The round could not be done (network, server error, bad configuration); nothing was decided."""


class WitnessRefused(Exception):
    """The log's checkpoint does not extend what this witness cosigned."""

    def __init__(self, problem: str, tree_size: int, detail: str) -> None:
        assert problem in REFUSAL_PROBLEMS
        self.problem, self.tree_size, self.detail = problem, tree_size, detail
        super().__init__(f"{problem} at tree size {tree_size}: {detail}")


@dataclass(frozen=True)
class WitnessConfig:
    server: str  # base URL of the log
    log_vkey: str  # the log's verifier key, pinned out of band
    name: str  # this witness's key name
    seed: bytes  # this witness's Ed25519 private seed
    state_path: Path
    api_key: str  # a client credential of the log, to pass its gates


def read_seed(path: Path) -> bytes:
    try:
        seed = base64.b64decode(path.read_text(encoding="ascii").strip(), validate=True)
    except (OSError, ValueError, binascii.Error) as exc:
        raise WitnessError(f"cannot read the witness key from {path}") from exc
    if len(seed) != signed_note.SEED_SIZE:
        raise WitnessError(f"the witness key in {path} is not 32 bytes")
    return seed


def write_new_key(path: Path, name: str) -> str:
    """Make a witness key file (mode 0600); returns its cosigner verifier key."""
    seed = signed_note.generate_seed()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(base64.b64encode(seed).decode("ascii") + "\n")
    return signed_note.cosigner_vkey(name, signed_note.public_key_from_seed(seed))


def _request(config: WitnessConfig, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
    data = json.dumps(body).encode() if body is not None else None
    headers = {"X-API-Key": config.api_key, "Accept": "application/json"}
    if data is not None:
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(config.server.rstrip("/") + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:  # noqa: S310 - the configured log URL
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        try:
            answer = json.loads(exc.read())
        except ValueError:
            answer = {}
        return exc.code, answer
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise WitnessError(f"{method} {path}: {type(exc).__name__}") from exc


def _get(config: WitnessConfig, path: str) -> dict[str, Any]:
    status, answer = _request(config, "GET", path)
    if status != 200:
        raise WitnessError(f"GET {path}: {status} {answer.get('reason_codes')}")
    return answer


def load_state(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
        return {**state, "tree_size": int(state["tree_size"]), "root_hash": bytes.fromhex(state["root_hash"]).hex()}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise WitnessError(f"the state file {path} is unreadable: fix or restore it, never delete it") from exc


def _save_state(path: Path, state: dict[str, Any]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(state, indent=1), encoding="utf-8")
    with tmp.open("rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, path)  # a crash leaves the old state or the new one, never half


def _signed_checkpoint(config: WitnessConfig, note: str) -> tuple[str, signed_note.Checkpoint]:
    try:
        text = signed_note.verify_note(note, config.log_vkey)
        checkpoint = signed_note.parse_checkpoint(text)
    except (signed_note.NoteVerificationError, signed_note.CheckpointFormatError) as exc:
        raise WitnessRefused("bad_signature", -1, str(exc)) from exc
    if checkpoint.origin != signed_note.parse_vkey(config.log_vkey)[0]:
        raise WitnessRefused("bad_signature", checkpoint.size, f"origin {checkpoint.origin!r} is not this log's")
    return text, checkpoint


def _cosigned_by_me(config: WitnessConfig, note: str) -> bool:
    vkey = signed_note.cosigner_vkey(config.name, signed_note.public_key_from_seed(config.seed))
    try:
        signed_note.verify_cosignature(note, vkey)
    except signed_note.NoteVerificationError:
        return False
    return True


def witness_round(config: WitnessConfig) -> str:
    """One round; returns what was done, raises WitnessRefused or WitnessError."""
    note = _get(config, "/audit/checkpoints/latest")["note"]
    text, checkpoint = _signed_checkpoint(config, note)
    state = load_state(config.state_path)
    if state is not None:
        kept_size, kept_root = state["tree_size"], bytes.fromhex(state["root_hash"])
        if checkpoint.size < kept_size:
            raise WitnessRefused("rollback", checkpoint.size, f"smaller than the {kept_size} records already cosigned")
        if checkpoint.size == kept_size:
            if checkpoint.root != kept_root:
                raise WitnessRefused("fork", checkpoint.size, "same size as the cosigned checkpoint, another root")
            if _cosigned_by_me(config, note):
                return f"unchanged at {checkpoint.size}"
            # Cosigned before, but the log does not show it (its post failed): hand it in again below.
        else:
            query = urllib.parse.urlencode({"first": kept_size, "second": checkpoint.size})
            document = _get(config, f"/audit/proofs/consistency?{query}")
            try:
                proof = [bytes.fromhex(h) for h in document["proof"]]
            except (KeyError, TypeError, ValueError) as exc:
                raise WitnessRefused("inconsistent", checkpoint.size, "the consistency proof is malformed") from exc
            if not verify_consistency(kept_size, checkpoint.size, proof, kept_root, checkpoint.root):
                raise WitnessRefused("inconsistent", checkpoint.size, f"no valid consistency proof from the cosigned {kept_size}")
    line = signed_note.cosignature_line(text, config.name, config.seed, timestamp=int(time.time()))
    _save_state(
        config.state_path,
        {"origin": checkpoint.origin, "tree_size": checkpoint.size, "root_hash": checkpoint.root.hex(), "note": text},
    )
    status, answer = _request(config, "POST", f"/audit/checkpoints/{checkpoint.size}/cosignatures", {"cosignature": line})
    if status != 201:
        raise WitnessError(f"the log did not take the cosignature: {status} {answer.get('reason_codes')}")
    return f"cosigned {checkpoint.size}"


def report_refusal(config: WitnessConfig, refused: WitnessRefused) -> bool:
    """Tell the log (its `witness_refused` alert). Best effort: the witness's own alert stands anyway."""
    body = {"witness": config.name, "tree_size": max(refused.tree_size, 0), "problem": refused.problem}
    try:
        status, _ = _request(config, "POST", "/audit/witness-refusals", body)
    except WitnessError:
        return False
    return status == 202
