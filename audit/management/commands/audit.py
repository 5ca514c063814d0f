"""`python manage.py audit verify | checkpoint | keygen | export | prove | check-proof | trace`.

Every report prints a readable table by default and JSON with `--json`.
"""

from __future__ import annotations

import base64
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.dateparse import parse_datetime

from audit import signed_note
from audit.checkpoints import SigningKeyError, checkpoint_create, key_name, public_vkey
from audit.proofs import ProofError, check_proof, trace_inclusion_proof
from audit.selectors import audit_bodies_between, audit_records_for_trace, audit_verify
from audit.verify import ChainVerifier, Report, external_checkpoints, read_checkpoint_note


def _when(value: str | None) -> datetime | None:
    if value is None:
        return None
    parsed = parse_datetime(value) or (parse_datetime(value + "T00:00:00+00:00") if len(value) == 10 else None)
    if parsed is None:
        raise CommandError(f"not a date or ISO 8601 time: {value!r}")
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class Command(BaseCommand):
    help = "Verify, seal, export and prove the audit trail."
    # An investigation tool: it must run on a database whose checks fail
    # (missing triggers are reported by `verify` as a warning instead).
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="subcommand", required=True)
        verify = sub.add_parser("verify", help="Check every hash, link, gap, signature and PENDING record.")
        verify.add_argument("--json", action="store_true")
        verify.add_argument("--file", type=Path, help="Verify a JSONL export instead of the database.")
        verify.add_argument("--checkpoints", type=Path, help="Directory of external checkpoints.")
        verify.add_argument("--vkey", help="Verifier key of the checkpoints (default: from the signing key).")
        verify.add_argument("--progress", action="store_true", help="Show progress even when not on a terminal.")
        sub.add_parser("checkpoint", help="Seal the log now with a signed checkpoint.").add_argument("--json", action="store_true")
        sub.add_parser("keygen", help="Print a new signing key (stdout) and its public key (stderr).")
        export = sub.add_parser("export", help="Write records as JSONL, in seq order.")
        export.add_argument("--since", help="ISO date/time, inclusive.")
        export.add_argument("--until", help="ISO date/time, exclusive.")
        export.add_argument("--output", type=Path, help="File to write (default: stdout).")
        prove = sub.add_parser("prove", help="Inclusion proof of a request's records in a signed checkpoint.")
        prove.add_argument("trace_id")
        check = sub.add_parser("check-proof", help="Check a proof from `audit prove`, with no database.")
        check.add_argument("proof", type=Path)
        check.add_argument("--vkey")
        trace = sub.add_parser("trace", help="Every record of one request, in order.")
        trace.add_argument("trace_id")
        trace.add_argument("--json", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        name = options["subcommand"].replace("-", "_")
        getattr(self, f"cmd_{name}")(**options)

    # --- verify -----------------------------------------------------------

    def cmd_verify(self, **options: Any) -> None:
        show_progress = options["progress"] or sys.stderr.isatty()
        started = time.monotonic()

        def progress(done: int, total: int) -> None:
            if show_progress:
                rate = done / max(time.monotonic() - started, 1e-6)
                pct = 100 * done / total if total else 100
                sys.stderr.write(f"\rverifying: {done}/{total} records ({pct:.0f}%, {rate:,.0f}/s)")
                sys.stderr.flush()

        if options["file"]:
            report = self._verify_file(options["file"], options["checkpoints"], options["vkey"], progress)
        else:
            report = audit_verify(vkey=options["vkey"], checkpoint_dir=options["checkpoints"], progress=progress)
        if show_progress:
            sys.stderr.write("\n")
        self._print_report(report, as_json=options["json"])
        if not report.ok:
            sys.exit(1)

    def _verify_file(self, path: Path, checkpoint_dir: Path | None, vkey: str | None, progress: Any) -> Report:
        checkpoints: list[Any] = []
        problems = []
        if checkpoint_dir is not None:
            for source, note in external_checkpoints(checkpoint_dir):
                result = read_checkpoint_note(note, source, vkey)
                (checkpoints if not hasattr(result, "kind") else problems).append(result)
        verifier = ChainVerifier(checkpoints=checkpoints)
        verifier.report.problems.extend(problems)
        verifier.report.signatures_checked = bool(vkey and checkpoint_dir)
        try:
            with path.open(encoding="utf-8") as handle:
                for line in handle:
                    if line.strip():
                        verifier.feed(line)
                        if verifier.report.records % 10000 == 0:
                            progress(verifier.report.records, 0)
        except OSError as exc:
            raise CommandError(f"cannot read {path}: {exc}") from exc
        return verifier.finish()

    def _print_report(self, report: Report, *, as_json: bool) -> None:
        if as_json:
            self.stdout.write(json.dumps(report.as_dict()))
            return
        for warning in report.warnings:
            self.stdout.write(self.style.WARNING(f"warning: {warning}"))
        for problem in report.problems:
            self.stdout.write(f"seq {problem.seq}: {problem.kind}: {problem.detail}")
        bad_seqs = {p.seq for p in report.problems if p.kind in ("content", "link")}
        first, last = report.first_seq or 0, report.last_seq or 0
        self.stdout.write(f"Results found for records {first} to {last}:")
        self.stdout.write(f"{report.records - len(bad_seqs)}/{report.records} records valid")
        self.stdout.write(f"{report.checkpoints_checked} checkpoints checked" + ("" if report.signatures_checked else " (signatures NOT checked: no key)"))
        gaps = sum(1 for p in report.problems if p.kind == "gap")
        incomplete = sum(1 for p in report.problems if p.kind == "incomplete")
        self.stdout.write(f"{gaps} gaps, {incomplete} incomplete traces, {report.in_flight} in flight")
        self.stdout.write(self.style.SUCCESS("OK: the audit trail verifies") if report.ok else self.style.ERROR(f"FAILED: {len(report.problems)} problems"))

    # --- checkpoint / keygen ----------------------------------------------

    def cmd_checkpoint(self, **options: Any) -> None:
        try:
            checkpoint = checkpoint_create()
        except SigningKeyError as exc:
            raise CommandError(f"{exc}: make one with `python manage.py audit keygen`") from exc
        if options["json"]:
            self.stdout.write(json.dumps({"tree_size": checkpoint.tree_size, "root_hash": checkpoint.root_hash, "note": checkpoint.note}))
        else:
            self.stdout.write(checkpoint.note, ending="")
            self.stdout.write(f"sealed {checkpoint.tree_size} records; verifier key: {public_vkey()}")

    def cmd_keygen(self, **options: Any) -> None:
        seed = signed_note.generate_seed()
        self.stdout.write(base64.b64encode(seed).decode())
        vkey = signed_note.vkey(key_name(), signed_note.public_key_from_seed(seed))
        self.stderr.write(f"public verifier key (publish it): {vkey}")

    # --- export / trace / prove -------------------------------------------

    def cmd_export(self, **options: Any) -> None:
        since, until = _when(options["since"]), _when(options["until"])
        handle = options["output"].open("w", encoding="utf-8") if options["output"] else sys.stdout
        count = 0
        try:
            for body in audit_bodies_between(since=since, until=until):
                handle.write(body + "\n")
                count += 1
        finally:
            if handle is not sys.stdout:
                handle.close()
        self.stderr.write(f"exported {count} records")

    def cmd_trace(self, **options: Any) -> None:
        records = [json.loads(r.body) for r in audit_records_for_trace(trace_id=options["trace_id"])]
        if not records:
            raise CommandError(f"no audit records for trace {options['trace_id']}")
        if options["json"]:
            self.stdout.write(json.dumps(records))
            return
        self.stdout.write(f"{'seq':>8}  {'ts_utc':32}  {'event':15}  {'outcome':9}  {'gate/action':16}  reason_codes")
        for r in records:
            outcome = r["decision"] or r["status"]
            where = r["gate"] if r["event_type"] == "decision_audit" else (r["action"] or "")
            self.stdout.write(f"{r['seq']:>8}  {r['ts_utc']:32}  {r['event_type']:15}  {outcome:9}  {where or '':16}  {','.join(r['reason_codes'])}")

    def cmd_prove(self, **options: Any) -> None:
        try:
            vkey = public_vkey()
        except SigningKeyError:
            vkey = None
        try:
            document = trace_inclusion_proof(trace_id=options["trace_id"], vkey=vkey)
        except ProofError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(json.dumps(document, indent=2))

    def cmd_check_proof(self, **options: Any) -> None:
        try:
            document = json.loads(options["proof"].read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CommandError(f"cannot read proof: {exc}") from exc
        problems = check_proof(document, vkey=options["vkey"])
        for problem in problems:
            self.stdout.write(problem)
        if problems:
            sys.exit(1)
        self.stdout.write(self.style.SUCCESS(f"OK: {len(document['records'])} records of trace {document['trace_id']} are in the signed log"))
