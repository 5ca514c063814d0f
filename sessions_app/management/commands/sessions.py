"""`python manage.py sessions create-key | expire-key | set-roles | revoke-key | list-keys | revoke`."""

from __future__ import annotations

import getpass
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from sessions_app.models import ApiKey
from sessions_app.selectors import roles_of
from sessions_app.services import api_key_create, api_key_expire, api_key_revoke, api_key_set_roles, session_revoke
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
        create.add_argument(
            "--role", action="append", default=None, help="A role the key holds (repeatable; default: operator, docs/AUTHORIZATION.md)."
        )
        create.add_argument("--expires-in-days", type=float, help="Refused after this many days (default: until revoked).")
        expire_key = sub.add_parser(
            "expire-key", help="End a stored API key's life after an overlap (a rotation): refused after --in-days."
        )
        expire_key.add_argument("prefix")
        expire_key.add_argument("--in-days", type=float, required=True, help="Days of overlap left (0: now).")
        revoke_key = sub.add_parser("revoke-key", help="Revoke a stored API key by its prefix (vk_<prefix>_…).")
        revoke_key.add_argument("prefix")
        set_roles = sub.add_parser("set-roles", help="Replace a stored API key's roles (audited; effective on its next request).")
        set_roles.add_argument("prefix")
        set_roles.add_argument("--role", action="append", default=[], help="A role the key holds (repeatable; none: no role at all).")
        sub.add_parser("list-keys", help="List stored API keys (prefix, name, state; never the key).")
        revoke = sub.add_parser("revoke", help="Revoke a session (audited, idempotent).")
        revoke.add_argument("session_id")
        revoke.add_argument("--reason", default="", help="Why, for the audit trail (at most 200 characters).")

    def handle(self, *args: Any, **options: Any) -> None:
        command = options["subcommand"]
        if command == "create-key":
            days = options["expires_in_days"]
            if days is not None and days <= 0:
                raise CommandError("--expires-in-days must be more than 0")
            expires_at = timezone.now() + timedelta(days=days) if days is not None else None
            try:
                row, key = api_key_create(name=options["name"][:100], expires_at=expires_at, roles=options["role"])
            except VerittaError as exc:
                raise CommandError("--role: a role name is lowercase letters, digits, _ . - (at most 32)") from exc
            self.stderr.write(f"created API key {row.prefix} ({row.name}); it is shown once, store it now:")
            self.stdout.write(key)
        elif command == "expire-key":
            prefix = options["prefix"].removeprefix("vk_").split("_")[0]
            if options["in_days"] < 0:
                raise CommandError("--in-days must be 0 or more")
            expires_at = timezone.now() + timedelta(days=options["in_days"])
            if not api_key_expire(prefix=prefix, expires_at=expires_at, actor=operator()):
                raise CommandError(f"no active API key with prefix {prefix}")
            self.stdout.write(f"API key {prefix} expires at {expires_at.isoformat()} at the latest")
        elif command == "set-roles":
            prefix = options["prefix"].removeprefix("vk_").split("_")[0]
            try:
                changed = api_key_set_roles(prefix=prefix, roles=options["role"], actor=operator())
            except VerittaError as exc:
                raise CommandError("--role: a role name is lowercase letters, digits, _ . - (at most 32)") from exc
            if not changed:
                raise CommandError(f"no active API key with prefix {prefix}")
            self.stdout.write(f"API key {prefix} roles: {', '.join(sorted(set(options['role']))) or '(none)'}")
        elif command == "revoke-key":
            prefix = options["prefix"].removeprefix("vk_").split("_")[0]
            if not api_key_revoke(prefix=prefix):
                raise CommandError(f"no active API key with prefix {prefix}")
            self.stdout.write(f"revoked API key {prefix}")
        elif command == "list-keys":
            now = timezone.now()
            for row in ApiKey.objects.order_by("created_at"):
                state = row.state_at(now)
                when = {"revoked": row.revoked_at, "expired": row.expires_at, "expiring": row.expires_at}.get(state)
                state += f" {when.isoformat()}" if when else ""
                roles = ",".join(roles_of(row.roles)) or "-"
                self.stdout.write(f"{row.prefix}\t{row.name}\t{row.created_at.isoformat()}\t{state}\t{roles}")
        else:
            try:
                result = session_revoke(session_id=options["session_id"], actor=operator(), reason=options["reason"])
            except VerittaError as error:
                raise CommandError(f"{options['session_id']}: {error.code}") from error
            self.stdout.write(f"{result.session_id}: {result.status} at {result.revoked_at.isoformat()}")
