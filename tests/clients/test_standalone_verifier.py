"""The standalone verifier (clients/veritta_verify) on real proofs from the
proof endpoints: it says yes to the genuine ones and no, with the reason, to
every forgery: wrong sibling, wrong size, wrong key, reordered path, a path
one node too long or short, another record, an altered body, a forked
history, a missing or forged witness cosignature (immudb's GHSA-672p-m5jq-mrh8
is the reminder that a verifier must bind the proof to the index and size)."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from audit import signed_note
from audit.checkpoints import checkpoint_create, public_vkey
from conftest import API_KEY

PACKAGE = Path(__file__).resolve().parents[2] / "clients" / "veritta_verify"
sys.path.insert(0, str(PACKAGE))
from veritta_verify.core import (  # noqa: E402
    ALG_COSIGNATURE_V1,
    ALG_ED25519,
    Rejected,
    check_consistency_document,
    check_inclusion,
    parse_key,
)

SMOKE = {"action": "test_action", "event_type": "test_event"}
WITNESS_SEED = bytes(range(32))
WITNESS = "witness.example/w1"


def log_key(vkey: str | None = None) -> Any:
    return parse_key(vkey or public_vkey(), ALG_ED25519, "the log key")


def witness_key(seed: bytes = WITNESS_SEED, name: str = WITNESS) -> Any:
    vkey = signed_note.cosigner_vkey(name, signed_note.public_key_from_seed(seed))
    return parse_key(vkey, ALG_COSIGNATURE_V1, "a witness key")


def cosigned(note: str, seed: bytes = WITNESS_SEED, name: str = WITNESS) -> str:
    line = signed_note.cosignature_line(signed_note.note_text(note), name, seed, timestamp=1764800000)
    return signed_note.add_signature_lines(note, [line])


@pytest.fixture
def proven(api) -> dict[str, Any]:
    """A real answer, its proof at a checkpoint of 7 records (a deep enough path), and that checkpoint."""
    answer = api.process(SMOKE).json()
    for _ in range(2):
        api.process(SMOKE)
    checkpoint_create()
    proof = api.get(f"/audit/proofs/inclusion/seq/{answer['audit']['seq']}", HTTP_X_API_KEY=API_KEY).json()
    assert len(proof["records"][0]["proof"]) >= 2
    return {"answer": answer, "proof": proof, "note": proof["checkpoint"]}


def reject(reason: str, receipt: Any, proof: Any, note: str, key: Any = None, witnesses: list[Any] | None = None) -> None:
    with pytest.raises(Rejected, match=reason):
        check_inclusion(receipt, proof, note, key or log_key(), witnesses or [])


def test_the_genuine_proof_verifies_from_the_answer_or_its_receipt(proven):
    said = check_inclusion(proven["answer"], proven["proof"], proven["note"], log_key(), [])
    assert said.startswith(f"record seq {proven['answer']['audit']['seq']} ")
    assert check_inclusion(proven["answer"]["audit"], proven["proof"], proven["note"], log_key(), [])


def test_wrong_sibling_is_refused(proven):
    for position in range(len(proven["proof"]["records"][0]["proof"])):
        forged = copy.deepcopy(proven["proof"])
        node = forged["records"][0]["proof"][position]
        forged["records"][0]["proof"][position] = ("0" if node[0] != "0" else "1") + node[1:]
        reject("does not lead to the signed root", proven["answer"], forged, proven["note"])


def test_reordered_path_is_refused(proven):
    forged = copy.deepcopy(proven["proof"])
    forged["records"][0]["proof"].reverse()
    reject("does not lead to the signed root", proven["answer"], forged, proven["note"])


def test_path_too_long_or_too_short_is_refused(proven):
    longer = copy.deepcopy(proven["proof"])
    longer["records"][0]["proof"].append("ab" * 32)
    reject("longer than the path", proven["answer"], longer, proven["note"])
    shorter = copy.deepcopy(proven["proof"])
    shorter["records"][0]["proof"].pop()
    reject("shorter than the path", proven["answer"], shorter, proven["note"])


def test_wrong_size_is_refused(proven, api):
    forged = copy.deepcopy(proven["proof"])
    forged["tree_size"] += 1
    reject("the proof is for a tree of", proven["answer"], forged, proven["note"])
    # A genuine proof against a genuine, bigger checkpoint: not the checkpoint given.
    api.process(SMOKE)
    bigger = checkpoint_create()
    reject("the proof is for a tree of", proven["answer"], proven["proof"], bigger.note)
    # A checkpoint whose size was edited: its signature no longer holds.
    text = signed_note.note_text(proven["note"])
    origin, size, rest = text.split("\n", 2)
    edited = proven["note"].replace(f"{origin}\n{size}\n", f"{origin}\n{int(size) + 1}\n", 1)
    reject("signature .* is invalid", proven["answer"], proven["proof"], edited)


def test_a_claimed_leaf_index_is_never_trusted(proven):
    forged = copy.deepcopy(proven["proof"])
    forged["records"][0]["leaf_index"] += 1  # the verifier takes the index from the record's own seq
    assert check_inclusion(proven["answer"], forged, proven["note"], log_key(), [])
    moved = copy.deepcopy(proven["proof"])
    moved["records"][0]["body"]["seq"] += 1  # the record claims another place: its hash changes
    reject("no record in the proof is the one the receipt names", proven["answer"], moved, proven["note"])


def test_wrong_key_is_refused(proven):
    other_seed = b"\x07" * 32
    other = signed_note.vkey(signed_note.parse_vkey(public_vkey())[0], signed_note.public_key_from_seed(other_seed))
    reject("not signed by the log key", proven["answer"], proven["proof"], proven["note"], key=log_key(other))
    # A checkpoint signed by another key under the log's name, proof made to match it.
    body = signed_note.note_text(proven["note"])
    forged_note = signed_note.sign_note(body, signed_note.parse_vkey(public_vkey())[0], other_seed)
    reject("signature .* is invalid|not signed by the log key", proven["answer"], proven["proof"], forged_note)
    with pytest.raises(Rejected, match="not an Ed25519 log key"):
        log_key(signed_note.cosigner_vkey("x", signed_note.public_key_from_seed(other_seed)))


def test_another_record_or_an_altered_body_is_refused(proven):
    other = copy.deepcopy(proven["answer"])
    other["audit"]["record_hash"] = "ab" * 32
    reject("no record in the proof", other, proven["proof"], proven["note"])
    altered = copy.deepcopy(proven["proof"])
    altered["records"][0]["record_hash"] = "cd" * 32
    reject("does not hash to the record hash", proven["answer"], altered, proven["note"])
    foreign = copy.deepcopy(proven["answer"])
    foreign["trace_id"] = "00000000-0000-4000-8000-000000000000"
    reject("another request", foreign, proven["proof"], proven["note"])


def test_witness_cosignatures_are_required_when_keys_are_given(proven):
    note = cosigned(proven["note"])
    said = check_inclusion(proven["answer"], proven["proof"], note, log_key(), [witness_key()])
    assert said.endswith(f"cosigned by {WITNESS}")
    reject("not cosigned by witness", proven["answer"], proven["proof"], proven["note"], witnesses=[witness_key()])
    impostor = cosigned(proven["note"], seed=b"\x09" * 32)  # same name, another key: no cosignature by ours
    reject("not cosigned by witness", proven["answer"], proven["proof"], impostor, witnesses=[witness_key()])
    name, b64 = note.rsplit("\n", 2)[-2].split(" ", 2)[1:]
    tampered = note.replace(b64, b64[:-8] + ("A" if b64[-8] != "A" else "B") + b64[-7:])
    reject("cosignature of witness .* is invalid|not canonical", proven["answer"], proven["proof"], tampered, witnesses=[witness_key()])


def test_consistency_genuine_and_forged(api):
    for _ in range(2):
        api.process(SMOKE)
    old = checkpoint_create()
    for _ in range(3):
        api.process(SMOKE)
    checkpoint_create()
    document = api.get("/audit/proofs/consistency", data={"first": old.tree_size}, HTTP_X_API_KEY=API_KEY).json()
    assert check_consistency_document(document, log_key(), [], kept=old.note).startswith("the log ")
    for forge in ("sibling", "reorder", "drop", "size"):
        forged = copy.deepcopy(document)
        if forge == "sibling":
            forged["proof"][0] = "00" * 32
        elif forge == "reorder":
            forged["proof"].reverse()
        elif forge == "drop":
            forged["proof"].pop()
        else:
            forged["first"] = document["second"]  # claims the old checkpoint was the new one
        with pytest.raises(Rejected):
            check_consistency_document(forged, log_key(), [])
    with pytest.raises(Rejected, match="not the one you kept"):
        check_consistency_document(document, log_key(), [], kept=document["second"]["note"])


def test_the_command_says_yes_or_no_with_the_reason(proven, tmp_path):
    (tmp_path / "answer.json").write_text(json.dumps(proven["answer"]))
    (tmp_path / "proof.json").write_text(json.dumps(proven["proof"]))
    (tmp_path / "checkpoint.note").write_text(proven["note"])
    forged = copy.deepcopy(proven["proof"])
    forged["records"][0]["proof"].reverse()
    (tmp_path / "forged.json").write_text(json.dumps(forged))

    def run(proof: str, key: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "veritta_verify", "inclusion", "--receipt", "answer.json", "--proof", proof,
                "--checkpoint", "checkpoint.note", "--log-key", key]  # fmt: skip
        return subprocess.run(argv, cwd=tmp_path, env={"PYTHONPATH": str(PACKAGE)}, capture_output=True, text=True, timeout=60)

    ok = run("proof.json", public_vkey())
    assert (ok.returncode, ok.stdout.split(":")[0]) == (0, "yes"), ok.stdout + ok.stderr
    bad = run("forged.json", public_vkey())
    assert bad.returncode == 1 and bad.stdout.startswith("no: the audit path does not lead to the signed root")
    garbled = run("proof.json", "not-a-key")
    assert garbled.returncode == 1 and garbled.stdout.startswith("no: the log key")
