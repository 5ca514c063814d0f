"""`python manage.py governance fingerprint | load-profiles | reason-codes | executors | validate | explain | expire-approvals`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from governance.authoring import AuthoringError, explain_file, validate_file
from governance.profiles import ProfileFileError, shipped_fingerprint
from governance.registry import executors_described
from governance.services import ProfileLoadRefused, profiles_load
from sessions_app.management.commands.sessions import operator
from veritta_site.errors import VerittaError, catalogue_markdown


class Command(BaseCommand):
    help = "Policy profiles: print the fingerprint lock value, or load the shipped profiles."
    # Both subcommands are what an operator runs to *fix* a failing lock check.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="subcommand", required=True)
        sub.add_parser("fingerprint", help="Print only the 64-hex value for VERITTA_PROFILES_FINGERPRINT.")
        sub.add_parser("load-profiles", help="Load the profiles shipped in the repo and make them the active set (idempotent; refused, changing nothing, unless VERITTA_PROFILES_FINGERPRINT accepts the new set).")
        sub.add_parser("reason-codes", help="Print the reason-code catalogue as the Markdown table of docs/ERROR_ENVELOPE.md.")
        executors = sub.add_parser("executors", help="List the registered executors (VERITTA_EXECUTORS) with versions, capabilities and actions.")
        executors.add_argument("--json", action="store_true", help="One JSON array instead of a table.")
        validate = sub.add_parser("validate", help="Check a profile file: every schema and rule problem named by its field; exit 1 if any.")
        validate.add_argument("file", type=Path)
        explain = sub.add_parser("explain", help="Print what POST /process would decide for a request under a profile file, gate by gate, without executing or recording anything.")
        explain.add_argument("--profile", type=Path, required=True, help="The profile file to decide with.")
        explain.add_argument("--request", required=True, help="The request body: JSON text, or @FILE.")
        explain.add_argument("--header", action="append", default=[], help="A request header, 'Name: value' (repeatable).")
        explain.add_argument("--content-type", default="application/json")
        sub.add_parser("expire-approvals", help="Expire the held requests that waited past their expires_at (each recorded; their payloads deleted; the background worker does the same), then run once the approved requests a killed process left untaken, then delete the sealed answers past VERITTA_APPROVAL_ANSWER_RETENTION_S.")
        explain.add_argument("--check-credentials", action="store_true", help="Also run G0/G2/G4 on the --header values (read-only).")
        explain.add_argument("--role", action="append", default=None, help="A role the principal holds (repeatable); with --check-credentials, narrows the credential's roles.")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            if options["subcommand"] == "fingerprint":
                self.stdout.write(shipped_fingerprint())
                return
            if options["subcommand"] == "reason-codes":
                self.stdout.write(catalogue_markdown())
                return
            if options["subcommand"] == "executors":
                self._executors(as_json=options["json"])
                return
            if options["subcommand"] == "expire-approvals":
                from governance.approval_flows import resume_stranded
                from governance.approvals import answers_purge_due, expire_due

                expired = expire_due(background=False)
                self.stdout.write(f"expired {len(expired)} held request(s)" + "".join(f"\n{i}" for i in expired))
                resumed = resume_stranded()
                if resumed:
                    self.stdout.write(f"ran {len(resumed)} approved request(s) left untaken" + "".join(f"\n{i}" for i in resumed))
                purged = answers_purge_due()
                if purged:
                    self.stdout.write(f"deleted {len(purged)} sealed answer(s) past their retention" + "".join(f"\n{i}" for i in purged))
                return
            if options["subcommand"] == "validate":
                self.stdout.write(validate_file(options["file"]))
                return
            if options["subcommand"] == "explain":
                explained = explain_file(
                    options["profile"],
                    options["request"],
                    headers=options["header"],
                    content_type=options["content_type"],
                    check_credentials=options["check_credentials"],
                    roles=options["role"],
                )
                self.stdout.write(json.dumps(explained, indent=2, sort_keys=True))
                return
            result = profiles_load(actor=operator())
        except (ProfileFileError, ProfileLoadRefused, AuthoringError, VerittaError) as exc:
            raise CommandError(str(exc)) from exc
        activated = f"{len(result.activated)} activated"
        if result.activated:
            activated += f" ({', '.join(result.activated)}; {result.new} never loaded before)"
        self.stdout.write(
            f"profiles: {activated}, "
            f"{result.unchanged} unchanged, {result.deactivated} deactivated; "
            f"active fingerprint {result.fingerprint}"
        )

    def _executors(self, *, as_json: bool) -> None:
        described = executors_described()
        if as_json:
            self.stdout.write(json.dumps(described, indent=2))
            return
        for e in described:
            capabilities = ",".join(e["capabilities"]) or "-"  # type: ignore[arg-type]
            actions = ",".join(e["actions"])  # type: ignore[arg-type]
            self.stdout.write(f"{e['executor_id']}  {e['version']}  capabilities={capabilities}  actions={actions}  ({e['class']})")
