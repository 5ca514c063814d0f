"""`python manage.py sessions create-key | revoke-key | list-keys | revoke`."""

from __future__ import annotations

import getpass
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from sessions_app.models import ApiKey
from sessions_app.services import api_key_create, api_key_revoke, session_revoke
from veritta_site.errors import VerittaError


def operator() -> dict[str, str]:
    """The actor of a command: the operating-system user who ran it."""
    try:
        name = getpass.getuser()
    except (KeyError, OSError):
        name = "unknown"
    return {"kind": "operator", "id": name[:64]}


class Command(BaseCommand):
    help = "API keys and sessions: create or revoke stored API keys, revoke a session."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="subcommand", required=True)
        create = sub.add_parser("create-key", help="Create an API key and print it once (only its digest is stored).")
        create.add_argument("--name", required=True, help="What the key is for, e.g. the client's name.")
        revoke_key = sub.add_parser("revoke-key", help="Revoke a stored API key by its prefix (vk_<prefix>_…).")
        revoke_key.add_argument("prefix")
        sub.add_parser("list-keys", help="List stored API keys (prefix, name, state; never the key).")
        revoke = sub.add_parser("revoke", help="Revoke a session (audited, idempotent).")
        revoke.add_argument("session_id")
        revoke.add_argument("--reason", default="", help="Why, for the audit trail (at most 200 characters).")

    def handle(self, *args: Any, **options: Any) -> None:
        command = options["subcommand"]
        if command == "create-key":
            row, key = api_key_create(name=options["name"][:100])
            self.stderr.write(f"created API key {row.prefix} ({row.name}); it is shown once, store it now:")
            self.stdout.write(key)
        elif command == "revoke-key":
            prefix = options["prefix"].removeprefix("vk_").split("_")[0]
            if not api_key_revoke(prefix=prefix):
                raise CommandError(f"no active API key with prefix {prefix}")
            self.stdout.write(f"revoked API key {prefix}")
        elif command == "list-keys":
            for row in ApiKey.objects.order_by("created_at"):
                state = f"revoked {row.revoked_at.isoformat()}" if row.revoked_at else "active"
                self.stdout.write(f"{row.prefix}\t{row.name}\t{row.created_at.isoformat()}\t{state}")
        else:
            try:
                result = session_revoke(session_id=options["session_id"], actor=operator(), reason=options["reason"])
            except VerittaError as error:
                raise CommandError(f"{options['session_id']}: {error.code}") from error
            self.stdout.write(f"{result.session_id}: {result.status} at {result.revoked_at.isoformat()}")
