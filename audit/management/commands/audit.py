"""`python manage.py audit verify | checkpoint | keygen | export | prove | check-proof | trace | summary | stats | slo | rollup | witness | witness-keygen`.

Every report prints a readable table by default and JSON with `--json`.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.dateparse import parse_datetime

from audit import rollups, signed_note
from audit.alerts import alert_raise
from audit.anchors import Anchors, anchor_read, checkpoints_read
from audit.chain import integrate, oldest_waiting, start_sequencer
from audit.checkpoints import SigningKeyError, checkpoint_create, key_name, public_vkey
from audit.exports import export_anchor_write
from audit.key_rotation import rotate_signing_key
from audit.keyring import KeyRing, KeyRingError, configured_keyring, keyring_path
from audit.models import AuditRecord
from audit.promises import PromiseError, check_promise
from audit.proofs import ProofError, check_proof, entry_inclusion_proof, trace_inclusion_proof
from audit.reports import Objectives, Window, audit_slo, audit_stats, audit_summary
from audit.rollups import FOLD_BATCH
from audit.selectors import (
    audit_bodies_between,
    audit_records_for_trace,
    audit_seq_range,
    audit_verify,
    checkpoint_latest,
)
from audit.tasks import verification_run_start
from audit.verification_runs import alert_verify_failed, verification_run_record
from audit.verify import ChainVerifier, Report, external_checkpoints


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
        verify.add_argument(
            "--anchor", type=Path, help="With --file: the export's anchor (EXPORT.anchor from `audit export`)."
        )
        verify.add_argument(
            "--vkey", help="Verifier key of the checkpoints (default: the key ring, else the signing key)."
        )
        verify.add_argument("--keyring", type=Path, help="Key ring file of the checkpoints (audit/keyring.py).")
        verify.add_argument("--progress", action="store_true", help="Show progress even when not on a terminal.")
        verify.add_argument(
            "--background",
            action="store_true",
            help="Queue the verify for the worker (manage.py db_worker --queue-name verify), print its run id and return.",
        )
        verify.add_argument(
            "--watch", type=int, metavar="RUN", help="Follow a background run to its end; exit as verify would."
        )
        sub.add_parser("checkpoint", help="Seal the log now with a signed checkpoint.").add_argument(
            "--json", action="store_true"
        )
        sub.add_parser("keygen", help="Print a new signing key (stdout) and its public key (stderr).")
        sub.add_parser(
            "rotate-key",
            help="Hand checkpoint signing over to the key in VERITTA_AUDIT_NEW_SIGNING_KEY: a handover checkpoint "
            "signed by both keys, and the key ring file (docs/DEPLOYMENT.md).",
        )
        export = sub.add_parser("export", help="Write records as JSONL, in seq order.")
        export.add_argument("--since", help="ISO date/time, inclusive.")
        export.add_argument("--until", help="ISO date/time, exclusive.")
        export.add_argument("--output", type=Path, help="File to write (default: stdout).")
        export.add_argument("--anchor", type=Path, help="Where to write the export's anchor (default: OUTPUT.anchor).")
        prove = sub.add_parser(
            "prove", help="Inclusion proof of a request's records (or of one receipt's entry) in a signed checkpoint."
        )
        target = prove.add_mutually_exclusive_group(required=True)
        target.add_argument("trace_id", nargs="?")
        target.add_argument("--entry-hash", help="The entry_hash of a receipt (a promise names only this).")
        target.add_argument("--receipt", type=Path, help="A receipt saved as JSON (the answer's `audit` object).")
        sub.add_parser(
            "sequence", help="Move records waiting in the intake into the chain now (PostgreSQL's batched write path)."
        ).add_argument("--follow", action="store_true", help="Keep doing it, as a standby sequencer, until stopped.")
        check = sub.add_parser("check-proof", help="Check a proof from `audit prove`, with no database.")
        check.add_argument("proof", type=Path)
        check.add_argument("--vkey")
        trace = sub.add_parser("trace", help="Every record of one request, in order.")
        trace.add_argument("trace_id")
        trace.add_argument("--json", action="store_true")
        summary = sub.add_parser("summary", help="Decisions ALLOW/DENY, denials by reason code and records by type.")
        summary.add_argument("--days", type=int, default=1, help="Window: the last N days (default 1).")
        summary.add_argument("--event-type", choices=["decision_audit", "action_audit"])
        summary.add_argument("--limit", type=int, help="Count only the newest N records of the window.")
        stats = sub.add_parser("stats", help="Records by reason code, action, actor and hour.")
        stats.add_argument("--days", type=float, default=1, help="Window: the last N days (default 1).")
        stats.add_argument("--reason-code", help="Only records with this reason code (e.g. RATE_LIMIT_EXCEEDED).")
        stats.add_argument("--top", type=int, default=20, help="Actors shown (default 20).")
        slo = sub.add_parser("slo", help="Each SLO against its objective; exit 1 and alert on a breach.")
        slo.add_argument("--hours", type=float, help="Window (default VERITTA_SLO_WINDOW_HOURS).")
        rollup = sub.add_parser(
            "rollup", help='Fold new records into the reports\' hourly rollups (docs/OPERATIONS.md "Reports").'
        )
        rollup_mode = rollup.add_mutually_exclusive_group()
        rollup_mode.add_argument(
            "--rebuild", action="store_true", help="Drop the rollups and fold the whole chain again."
        )
        rollup_mode.add_argument(
            "--check", action="store_true", help="Recount the folded records; exit 1 if they differ."
        )
        rollup.add_argument(
            "--batch", type=int, default=FOLD_BATCH, help=f"Records per transaction (default {FOLD_BATCH})."
        )
        witness = sub.add_parser(
            "witness",
            help="Run a witness of a log over HTTP: cosign checkpoints that extend the last one (docs/VERIFYING.md).",
        )
        witness.add_argument("--server", required=True, help="The log's base URL.")
        witness.add_argument("--log-key", required=True, help="The log's verifier key, pinned out of band.")
        witness.add_argument(
            "--name", required=True, help="This witness's key name (as in the log's VERITTA_AUDIT_WITNESSES)."
        )
        witness.add_argument(
            "--key-file", type=Path, required=True, help="This witness's private key (from witness-keygen)."
        )
        witness.add_argument(
            "--state-file", type=Path, required=True, help="The last checkpoint this witness cosigned."
        )
        witness.add_argument("--follow", action="store_true", help="Keep going, a round every --interval seconds.")
        witness.add_argument("--interval", type=float, default=60.0)
        wkeygen = sub.add_parser("witness-keygen", help="Make a witness key file; print its cosigner verifier key.")
        wkeygen.add_argument("--name", required=True)
        wkeygen.add_argument("--key-file", type=Path, required=True)
        for report_parser in (summary, stats, slo):
            report_parser.add_argument("--json", action="store_true")
            report_parser.add_argument(
                "--progress", action="store_true", help="Show progress even when not on a terminal."
            )

    def handle(self, *args: Any, **options: Any) -> None:
        name = options["subcommand"].replace("-", "_")
        getattr(self, f"cmd_{name}")(**options)

    # --- verify -----------------------------------------------------------

    def cmd_verify(self, **options: Any) -> None:
        if options["background"]:
            if options["file"]:
                raise CommandError("--background verifies the database; a file is verified here and now")
            run = verification_run_start(actor="operator:manage.py audit verify --background")
            self.stdout.write(
                f"verification run {run.pk} queued; follow it with: manage.py audit verify --watch {run.pk}"
            )
            return
        if options["watch"] is not None:
            self._watch(options["watch"], as_json=options["json"])
            return
        show_progress = options["progress"] or sys.stderr.isatty()
        started = time.monotonic()

        def progress(done: int, total: int) -> None:
            if show_progress:
                rate = done / max(time.monotonic() - started, 1e-6)
                pct = 100 * done / total if total else 100
                sys.stderr.write(f"\rverifying: {done}/{total} records ({pct:.0f}%, {rate:,.0f}/s)")
                sys.stderr.flush()

        if options["anchor"] and not options["file"]:
            raise CommandError("--anchor goes with --file: the database is checked against its own checkpoints")
        keys = options["vkey"] or self._keyring_option(options["keyring"])
        if options["file"]:
            report = self._verify_file(options["file"], options["checkpoints"], options["anchor"], keys, progress)
        else:
            report = audit_verify(vkey=keys, checkpoint_dir=options["checkpoints"], progress=progress)
            # Kept for the console's chain status ("last verify"), like its own runs.
            verification_run_record(
                report=report, actor="operator:manage.py audit verify", elapsed_s=time.monotonic() - started
            )
        if show_progress:
            sys.stderr.write("\n")
        self._print_report(report, as_json=options["json"])
        if not options["file"] and not options["json"]:
            self._print_witnesses()
        if not report.ok:
            if not options["file"] and report.problems:
                self.stdout.flush()
                alert_verify_failed(report)  # after the verify: its records follow the ones it read
            sys.exit(report.exit_status)

    def _watch(self, run_id: int, *, as_json: bool) -> None:
        """Progress of a background run until it ends; its verdict and exit code as `verify`."""
        from audit.models import VerificationRun

        shown = None
        while True:
            run = VerificationRun.objects.filter(pk=run_id).first()
            if run is None:
                raise CommandError(f"no verification run {run_id}")
            line = f"run {run.pk}: {run.status}, {run.records}/{run.total if run.total is not None else '?'} records"
            if line != shown:
                sys.stderr.write(line + "\n")
                shown = line
            if run.status in (VerificationRun.DONE, VerificationRun.FAILED):
                break
            time.sleep(0.5)
        if run.status == VerificationRun.FAILED:
            raise CommandError(f"verification run {run.pk} broke ({run.error}); the chain was not judged")
        verdict = {"ok": run.ok, "records": run.records, "problems": run.problems, "warnings": run.warnings}
        if as_json:
            self.stdout.write(json.dumps(verdict, sort_keys=True))
        else:
            self.stdout.write(f"{'OK' if run.ok else 'FAILED'}: {run.records} records, {len(run.problems)} problem(s)")
            for problem in run.problems[:100]:
                self.stdout.write(f"  seq {problem['seq']}: {problem['kind']}: {problem['detail']}")
        if not run.ok:
            sys.exit(1)

    @staticmethod
    def _keyring_option(path: Path | None) -> KeyRing | None:
        if path is None:
            return None
        try:
            return KeyRing.from_json(path.read_text(encoding="utf-8"))
        except (OSError, KeyRingError) as exc:
            raise CommandError(f"--keyring {path}: {exc}") from exc

    def _verify_file(
        self, path: Path, checkpoint_dir: Path | None, anchor: Path | None, vkey: str | KeyRing | None, progress: Any
    ) -> Report:
        vkey = vkey or configured_keyring()  # the configured ring or key, as `verify` on the database uses
        found = Anchors()
        if checkpoint_dir is not None:
            found = checkpoints_read(external_checkpoints(checkpoint_dir), vkey, directory=checkpoint_dir)
        export = anchor_read(anchor, vkey) if anchor is not None else Anchors()
        # An export's own sealed hashes, when it has an anchor that passed; else the directory's.
        sealed = export if export.anchor_file is not None else found
        verifier = ChainVerifier(
            checkpoints=found.checkpoints + export.checkpoints,
            sealed=sealed.sealed(),
            start=export.start,
            extent=export.extent,
            anchor_required=True,
        )
        verifier.report.problems += found.problems + export.problems
        verifier.report.warnings += found.warnings + export.warnings
        verifier.report.signatures_checked = bool(vkey)
        try:
            with path.open("rb") as handle:
                for raw in handle:
                    verifier.feed(_line_text(raw))
                    if verifier.report.records % 10000 == 0:
                        progress(verifier.report.records, 0)
        except OSError as exc:
            raise CommandError(f"cannot read {path}: {exc}") from exc
        return verifier.finish()

    @staticmethod
    def _checkpoints_line(report: Report) -> str:
        line = f"{report.checkpoints_checked} checkpoints checked"
        if report.checkpoint_copies > report.checkpoints_checked:
            line += f" ({report.checkpoint_copies} copies: database and files)"
        if not report.checkpoint_copies:
            return line + " (none found; with --file, give them with --anchor EXPORT.anchor or --checkpoints DIR)"
        if not report.signatures_checked:
            line += " (signatures NOT checked: no verifier key; set VERITTA_AUDIT_SIGNING_KEY or pass --vkey)"
        return line

    def _print_report(self, report: Report, *, as_json: bool) -> None:
        if as_json:
            self.stdout.write(json.dumps(report.as_dict()))
            return
        for warning in report.warnings:
            self.stdout.write(self.style.WARNING(f"warning: {warning}"))
        for problem in report.problems:
            where = f"seq {problem.seq}" if problem.seq is not None else "intake"
            self.stdout.write(f"{where}: {problem.kind}: {problem.detail}")
        bad_seqs = {p.seq for p in report.problems if p.kind in ("content", "link")}
        first, last = report.first_seq or 0, report.last_seq or 0
        self.stdout.write(f"Results found for records {first} to {last}:")
        self.stdout.write(f"{report.records - len(bad_seqs)}/{report.records} records valid")
        self.stdout.write(self._checkpoints_line(report))
        if report.last_seq and report.anchored_upto < report.last_seq and not report.anchor_required:
            # The database is the log itself: its tail is checked, but nothing signed vouches for it yet.
            self.stdout.write(
                f"records {max(report.anchored_upto + 1, first)}..{last} come after the newest verified checkpoint:"
                " checked link by link, not yet sealed (`audit checkpoint` seals them)"
            )
        gaps = sum(1 for p in report.problems if p.kind == "gap")
        incomplete = sum(1 for p in report.problems if p.kind == "incomplete")
        self.stdout.write(f"{gaps} gaps, {incomplete} incomplete traces, {report.in_flight} in flight")
        if report.status == "ok":
            self.stdout.write(self.style.SUCCESS("OK: the audit trail verifies"))
        elif report.status == "unanchored":
            unanchored = report.as_dict()["unanchored_from"]
            self.stdout.write(
                self.style.WARNING(
                    f"UNANCHORED: consistent, but records from {unanchored} are not tied to a verified signed checkpoint"
                    " (give --anchor EXPORT.anchor, or --checkpoints DIR, with the verifier key): NOT verified"
                )
            )
        else:
            self.stdout.write(self.style.ERROR(f"FAILED: {len(report.problems)} problems"))

    def _print_witnesses(self) -> None:
        """The cosignatures of the newest checkpoint by the witnesses VERITTA_AUDIT_WITNESSES requires."""
        from audit.witnesses import witness_status

        checkpoint = checkpoint_latest()
        if checkpoint is None:
            self.stdout.write(self.style.WARNING("no checkpoint yet: nothing for a witness to cosign"))
            return
        for status in witness_status(checkpoint):
            if status.cosigned_at is not None:
                self.stdout.write(
                    f"witness {status.name}: cosigned checkpoint {checkpoint.tree_size} at {status.cosigned_at.isoformat()}"
                )
            else:
                self.stdout.write(
                    self.style.WARNING(f"witness {status.name}: has not cosigned checkpoint {checkpoint.tree_size}")
                )

    # --- witness ---------------------------------------------------------------

    def cmd_witness(self, **options: Any) -> None:
        from audit.witness_client import (
            WitnessConfig,
            WitnessError,
            WitnessRefused,
            read_seed,
            report_refusal,
            witness_round,
        )

        api_key = os.environ.get("VERITTA_WITNESS_API_KEY", "")
        if not api_key:
            raise CommandError(
                "set VERITTA_WITNESS_API_KEY: a client credential of the log (kept out of the command line)"
            )
        try:
            signed_note.parse_vkey(options["log_key"])
            config = WitnessConfig(
                server=options["server"],
                log_vkey=options["log_key"],
                name=options["name"],
                seed=read_seed(options["key_file"]),
                state_path=options["state_file"],
                api_key=api_key,
            )
        except (signed_note.KeyFormatError, WitnessError) as exc:
            raise CommandError(str(exc)) from exc
        while True:
            try:
                self.stdout.write(witness_round(config))
            except WitnessRefused as refused:
                told = report_refusal(config, refused)
                alert = {"alert": "witness_refused", "witness": config.name, "problem": refused.problem,
                         "tree_size": refused.tree_size, "detail": refused.detail, "log_told": told}  # fmt: skip
                self.stderr.write(f"ALERT {json.dumps(alert)}")
                sys.exit(3)
            except WitnessError as exc:
                self.stderr.write(f"witness round failed: {exc}")
                if not options["follow"]:
                    sys.exit(2)
            if not options["follow"]:
                return
            time.sleep(options["interval"])

    def cmd_witness_keygen(self, **options: Any) -> None:
        from audit.witness_client import write_new_key

        try:
            vkey = write_new_key(options["key_file"], options["name"])
        except (OSError, ValueError) as exc:
            raise CommandError(f"cannot write {options['key_file']}: {exc}") from exc
        self.stdout.write(vkey)

    # --- checkpoint / keygen ----------------------------------------------

    def cmd_checkpoint(self, **options: Any) -> None:
        try:
            checkpoint = checkpoint_create()
        except SigningKeyError as exc:
            raise CommandError(f"{exc}: make one with `python manage.py audit keygen`") from exc
        if options["json"]:
            self.stdout.write(
                json.dumps(
                    {"tree_size": checkpoint.tree_size, "root_hash": checkpoint.root_hash, "note": checkpoint.note}
                )
            )
        else:
            self.stdout.write(checkpoint.note, ending="")
            self.stdout.write(f"sealed {checkpoint.tree_size} records; verifier key: {public_vkey()}")

    def cmd_keygen(self, **options: Any) -> None:
        seed = signed_note.generate_seed()
        self.stdout.write(base64.b64encode(seed).decode())
        vkey = signed_note.vkey(key_name(), signed_note.public_key_from_seed(seed))
        self.stderr.write(f"public verifier key (publish it): {vkey}")

    def cmd_rotate_key(self, **options: Any) -> None:
        # From the environment, never the command line (visible to every user in ps).
        raw = os.environ.get("VERITTA_AUDIT_NEW_SIGNING_KEY", "")
        try:
            new_seed = base64.b64decode(raw, validate=True)
        except (ValueError, binascii.Error):
            new_seed = b""
        if len(new_seed) != signed_note.SEED_SIZE:
            raise CommandError("set VERITTA_AUDIT_NEW_SIGNING_KEY to a new key from `python manage.py audit keygen`")
        try:
            size, ring = rotate_signing_key(new_seed)
        except (SigningKeyError, KeyRingError) as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(
            f"handover checkpoint at size {size}, signed by keys {ring.keys[-2].key_id} and {ring.current.key_id}\n"
            f"key ring written to {keyring_path()}\n"
            f"now set VERITTA_AUDIT_SIGNING_KEY to the new key on every server and restart them; "
            f"publish the new verifier key: {ring.current.vkey}"
        )

    # --- export / trace / prove -------------------------------------------

    def cmd_export(self, **options: Any) -> None:
        since, until = _when(options["since"]), _when(options["until"])
        extent = audit_seq_range(since=since, until=until)
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
        anchor = options["anchor"] or (Path(f"{options['output']}.anchor") if options["output"] else None)
        if anchor is None or extent is None:
            self.stderr.write(
                "no anchor written (none for stdout without --anchor, or an empty export):"
                " `audit verify --file` will not call it ok"
            )
            return
        try:
            size = export_anchor_write(anchor, first=extent[0], last=extent[1])
        except SigningKeyError as exc:
            self.stderr.write(f"no anchor written: {exc}; `audit verify --file` will call this export unanchored")
            return
        self.stderr.write(f"anchor of records {extent[0]}..{extent[1]} under checkpoint {size}: {anchor}")

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
            self.stdout.write(
                f"{r['seq']:>8}  {r['ts_utc']:32}  {r['event_type']:15}  {outcome:9}  {where or '':16}  {','.join(r['reason_codes'])}"
            )

    def cmd_prove(self, **options: Any) -> None:
        try:
            vkey = public_vkey()
        except SigningKeyError:
            vkey = None
        try:
            if options["trace_id"]:
                document = trace_inclusion_proof(trace_id=options["trace_id"], vkey=vkey)
            else:
                entry, record = self._entry_to_prove(options, vkey)
                document = entry_inclusion_proof(entry_hash=entry, record_hash=record, vkey=vkey)
        except ProofError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(json.dumps(document, indent=2))

    def _entry_to_prove(self, options: dict[str, Any], vkey: str | None) -> tuple[str, str | None]:
        """(entry hash, record hash or None) of --entry-hash or --receipt."""
        if options["entry_hash"]:
            return str(options["entry_hash"]), None
        try:
            receipt = json.loads(options["receipt"].read_text(encoding="utf-8"))
            wanted = str(receipt["entry_hash"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CommandError(f"cannot read receipt: {exc}") from exc
        if receipt.get("promise"):
            if vkey is None:
                raise CommandError("cannot check the receipt's promise: no signing key configured")
            try:
                promise = check_promise(receipt["promise"], vkey)
            except PromiseError as exc:
                raise CommandError(str(exc)) from exc
            if promise.entry_hash != wanted:
                raise CommandError("the receipt's promise names another entry hash")
            if not AuditRecord.objects.filter(entry_hash=wanted).exists() and datetime.now(UTC) > promise.integrate_by:
                raise CommandError(
                    f"PROMISE BROKEN: entry {wanted} was promised by {receipt.get('integrate_by')} and is not in the chain"
                )
        return wanted, receipt.get("record_hash")

    def cmd_sequence(self, **options: Any) -> None:
        if not options["follow"]:
            placed = integrate(max_batches=1_000_000)
            waiting = oldest_waiting()
            self.stdout.write(
                f"sequenced {len(placed)} records"
                + (f"; the oldest waiting was committed {waiting.isoformat()}" if waiting else "")
            )
            return
        if not start_sequencer():
            raise CommandError("no batched write path here: sequencing is done by each write (SQLite)")
        self.stdout.write(f"sequencing every {settings.VERITTA_AUDIT_SEQUENCER_INTERVAL_S:g} s; stop with Ctrl-C")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            return

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
        self.stdout.write(
            self.style.SUCCESS(
                f"OK: {len(document['records'])} records of trace {document['trace_id']} are in the signed log"
            )
        )

    # --- summary / stats / slo (audit.reports; docs/OPERATIONS.md) -------------------

    def _progress(self, options: dict[str, Any]) -> Any:
        show = options["progress"] or sys.stderr.isatty()
        started = time.monotonic()

        def step(name: str) -> None:
            if show:
                self.stderr.write(f"[{time.monotonic() - started:6.2f}s] {options['subcommand']}: {name}")

        return step

    def cmd_rollup(self, **options: Any) -> None:
        if options["batch"] < 1:
            raise CommandError("--batch must be at least 1")
        if options["check"]:
            problems = rollups.check()
            for problem in problems:
                self.stderr.write(problem)
            if problems:
                raise CommandError("the rollups differ from the records: run `audit rollup --rebuild`")
            self.stdout.write(f"rollups agree with records 1..{rollups.folded_seq()}")
            return
        folded = rollups.rebuild(batch=options["batch"]) if options["rebuild"] else rollups.fold(batch=options["batch"])
        self.stdout.write(f"folded {folded} records; the rollups hold records 1..{rollups.folded_seq()}")

    def cmd_summary(self, **options: Any) -> None:
        if options["days"] < 1:
            raise CommandError("--days must be at least 1")
        summary = audit_summary(
            days=options["days"],
            limit=options["limit"],
            event_type=options["event_type"],
            progress=self._progress(options),
        )
        if options["json"]:
            self.stdout.write(json.dumps(summary))
            return
        window = summary["window"]
        self.stdout.write(f"Audit summary {window['since']} .. {window['until']} ({window['days']} day(s))")
        if window["event_type"]:
            self.stdout.write(f"event type: {window['event_type']}")
        self.stdout.write(
            f"{'records':32} {window['events']:>10}" + ("  (cut by --limit)" if window["truncated"] else "")
        )
        for event_type, n in summary["events_by_type"].items():
            self.stdout.write(f"  {event_type:30} {n:>10}")
        for decision, n in summary["decisions"].items():
            self.stdout.write(f"{'decisions ' + decision:32} {n:>10}")
        self.stdout.write("denials by reason code:" if summary["deny_breakdown"] else "denials by reason code: none")
        for code, n in summary["deny_breakdown"].items():
            self.stdout.write(f"  {code:30} {n:>10}")
        approvals = summary["approvals"]
        if approvals["held"] or approvals["approvals"] or approvals["rejections"] or approvals["expiries"]:
            self.stdout.write("four-eyes approval:")
            for step in ("held", "approvals", "rejections", "expiries", "executed"):
                self.stdout.write(f"  {step:30} {approvals[step]:>10}")
            waits = approvals["time_to_decision_s"]
            if waits["decided"]:
                self.stdout.write(f"  {'time to decision p50 / max s':30} {waits['p50']:>10} / {waits['max']}")

    def cmd_stats(self, **options: Any) -> None:
        window = Window.last(days=options["days"])
        stats = audit_stats(
            window=window, reason_code=options["reason_code"], top=options["top"], progress=self._progress(options)
        )
        if options["json"]:
            self.stdout.write(json.dumps(stats))
            return
        scope = f" with reason code {stats['reason_code']}" if stats["reason_code"] else ""
        self.stdout.write(f"Audit stats {window.since.isoformat()} .. {window.until.isoformat()}{scope}")
        self.stdout.write("\nby reason code:")
        self.stdout.write(f"  {'reason_code':32} {'event_type':16} {'count':>8}")
        for row in stats["by_reason_code"]:
            self.stdout.write(f"  {row['reason_code']:32} {row['event_type']:16} {row['count']:>8}")
        self.stdout.write("\nby action:")
        self.stdout.write(f"  {'action':24} {'PENDING':>8} {'SUCCESS':>8} {'FAILED':>8} {'BLOCKED':>8}")
        for action, row in stats["by_action"].items():
            self.stdout.write(
                f"  {action:24} {row['PENDING']:>8} {row['SUCCESS']:>8} {row['FAILED']:>8} {row['BLOCKED']:>8}"
            )
        self.stdout.write("\nby actor (decisions):")
        self.stdout.write(f"  {'actor':40} {'ALLOW':>8} {'DENY':>8}")
        for row in stats["by_actor"]:
            self.stdout.write(f"  {row['actor']:40} {row['ALLOW']:>8} {row['DENY']:>8}")
        self.stdout.write("\nby hour (decisions):")
        self.stdout.write(f"  {'hour':27} {'ALLOW':>8} {'DENY':>8}")
        for row in stats["by_hour"]:
            self.stdout.write(f"  {row['hour']:27} {row['ALLOW']:>8} {row['DENY']:>8}")

    def cmd_slo(self, **options: Any) -> None:
        objectives = Objectives.from_settings()
        if options["hours"] is not None:
            objectives = dataclasses.replace(objectives, window_hours=options["hours"])
        report = audit_slo(objectives=objectives, progress=self._progress(options))
        if options["json"]:
            self.stdout.write(json.dumps(report.as_dict()))
        else:
            self.stdout.write(f"SLOs {report.window.since.isoformat()} .. {report.window.until.isoformat()}")
            self.stdout.write(f"  {'slo':26} {'objective':14} {'value':>12} {'sample':>8}  status")
            for r in report.results:
                value = "no data" if r.value is None else f"{r.value:.4g}"
                status = self.style.SUCCESS("OK") if r.ok else self.style.ERROR("BREACH")
                note = f" ({r.note})" if r.note else ""
                self.stdout.write(f"  {r.name:26} {r.objective:14} {value:>12} {r.sample:>8}  {status}{note}")
            self.stdout.write(
                self.style.SUCCESS("OK: every SLO is met")
                if report.ok
                else self.style.ERROR(f"BREACH: {len(report.breaches)} SLO(s) missed")
            )
        self.stdout.flush()
        # After the report, so that the alerts' JSON log lines (stderr) never land inside the table.
        for breach in report.breaches:
            alert_raise(
                kind="slo_breach",
                subject=breach.name,
                summary=f"SLO {breach.name} breached: {breach.value:g} (objective {breach.objective})",
                detail={
                    "slo": breach.name,
                    "value": str(breach.value),
                    "objective": breach.objective,
                    "sample": breach.sample,
                },
                background=False,
            )
        if not report.ok:
            sys.exit(1)


def _line_text(raw: bytes) -> str:
    """One export line without its newline; bytes that are not UTF-8 make a line
    that is not an audit record (lines are checked byte for byte)."""
    line = raw[:-1] if raw.endswith(b"\n") else raw
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError:
        return line.decode("utf-8", errors="replace")
