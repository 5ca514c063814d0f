"""`python manage.py governance fingerprint | load-profiles`."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from governance.profiles import ProfileFileError, shipped_fingerprint
from governance.services import profiles_load
from veritta_site.errors import catalogue_markdown


class Command(BaseCommand):
    help = "Policy profiles: print the fingerprint lock value, or load the shipped profiles."
    # Both subcommands are what an operator runs to *fix* a failing lock check.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="subcommand", required=True)
        sub.add_parser("fingerprint", help="Print only the 64-hex value for VERITTA_PROFILES_FINGERPRINT.")
        sub.add_parser("load-profiles", help="Load the profiles shipped in the repo (idempotent).")
        sub.add_parser("reason-codes", help="Print the reason-code catalogue as the Markdown table of docs/ERROR_ENVELOPE.md.")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            if options["subcommand"] == "fingerprint":
                self.stdout.write(shipped_fingerprint())
                return
            if options["subcommand"] == "reason-codes":
                self.stdout.write(catalogue_markdown())
                return
            result = profiles_load()
        except (ProfileFileError, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(
            f"profiles: {result.created} created, {result.activated} activated, "
            f"{result.unchanged} unchanged, {result.deactivated} deactivated; "
            f"fingerprint {shipped_fingerprint()}"
        )
