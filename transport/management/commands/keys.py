"""Signing keys: list them, show an organization's public key, rotate it."""

from django.core.management.base import BaseCommand, CommandError

from directory.models import Organization
from transport import signing
from transport.models import SigningKey


class Command(BaseCommand):
    help = "Show or rotate the Ed25519 keys with which organizations sign their messages."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        sub.add_parser("list", help="Every organization's active key fingerprint.")
        for name, text in (
            ("show", "Print an organization's public key (made on first use)."),
            ("rotate", "Give an organization a new key pair; the old one is retired."),
        ):
            sub.add_parser(name, help=text).add_argument("organization")

    def handle(self, *args, action: str, organization: str = "", **options):
        if action == "list":
            return self._list()
        org = Organization.objects.filter(name__iexact=organization).first()
        if org is None:
            raise CommandError(f"No organization named {organization!r}.")
        key = signing.generate_key(org.pk) if action == "rotate" else signing.active_key(org.pk)
        self.stdout.write(f"Organization: {org.name}")
        self.stdout.write(f"Public key:   {key.public_key}")
        self.stdout.write(f"Fingerprint:  {key.fingerprint}")
        if action == "rotate":
            self.stdout.write(
                "Paste the new public key where the organizations that receive this one's "
                "messages keep it (the master's requestor list, or a requestor's master key)."
            )

    def _list(self) -> None:
        active = {
            key.organization_id: key.fingerprint for key in SigningKey.objects.filter(active=True)
        }
        for org in Organization.objects.order_by("name"):
            self.stdout.write(f"{org.name:<16}{active.get(org.pk, '(no key yet)')}")
