"""`python manage.py governance fingerprint | load-profiles | reason-codes | executors`."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from governance.profiles import ProfileFileError, shipped_fingerprint
from governance.registry import executors_described
from governance.services import ProfileLoadRefused, profiles_load
from veritta_site.errors import catalogue_markdown


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
            result = profiles_load()
        except (ProfileFileError, ProfileLoadRefused) as exc:
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
