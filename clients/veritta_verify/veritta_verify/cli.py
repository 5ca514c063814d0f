"""`veritta-verify inclusion|consistency ...`: prints `yes: …` and exits 0, or
`no: <reason>` and exits 1 (2 for a file that cannot be read at all)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from veritta_verify.core import (
    ALG_COSIGNATURE_V1,
    ALG_ED25519,
    Rejected,
    check_consistency_document,
    check_inclusion,
    parse_key,
)


def _json(path: str) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SystemExit(f"no: cannot read {path} as JSON ({type(exc).__name__})") from None


def _text(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, ValueError) as exc:
        raise SystemExit(f"no: cannot read {path} ({type(exc).__name__})") from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="veritta-verify", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    inclusion = sub.add_parser("inclusion", help="A receipt's record is in the log the checkpoint signed.")
    inclusion.add_argument("--receipt", required=True, help="The /process answer (or its `audit` object), JSON.")
    inclusion.add_argument("--proof", required=True, help="The answer of GET /audit/proofs/inclusion/..., JSON.")
    inclusion.add_argument("--checkpoint", required=True, help="The signed checkpoint note (text).")
    consistency = sub.add_parser("consistency", help="The newer checkpoint extends the older one.")
    consistency.add_argument("--proof", required=True, help="The answer of GET /audit/proofs/consistency, JSON.")
    consistency.add_argument("--old", help="A checkpoint note you kept: the proof must start from it.")
    for command in (inclusion, consistency):
        command.add_argument("--log-key", required=True, help="The log's verifier key name+keyid+base64 (from its operator).")
        command.add_argument("--witness-key", action="append", default=[], help="A witness key that must have cosigned; repeatable.")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        log_key = parse_key(args.log_key, ALG_ED25519, "the log key")
        witnesses = [parse_key(k, ALG_COSIGNATURE_V1, "a witness key") for k in args.witness_key]
        if args.command == "inclusion":
            said = check_inclusion(_json(args.receipt), _json(args.proof), _text(args.checkpoint), log_key, witnesses)
        else:
            kept = _text(args.old) if args.old else None
            said = check_consistency_document(_json(args.proof), log_key, witnesses, kept)
    except Rejected as exc:
        print(f"no: {exc}")
        return 1
    except SystemExit as exc:
        print(exc)
        return 2
    print(f"yes: {said}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
