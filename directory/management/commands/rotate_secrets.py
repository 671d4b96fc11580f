"""Re-encrypt every secret stored in the database under the first key of INTERORG_SECRETS_KEYS."""

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from interorg_site import encryption


class Command(BaseCommand):
    help = (
        "Re-encrypt the stored secrets (signing keys, LDAP bind passwords) with the first key of "
        "INTERORG_SECRETS_KEYS, in one transaction. Put the new key first and keep the old one "
        "after it until this has run; then the old key can go. --check only reads."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--check",
            action="store_true",
            help="Only check that every secret opens with the configured keys; write nothing.",
        )

    def handle(self, *args, check: bool, **options):
        try:
            with transaction.atomic():
                count, older = encryption.reencrypt_all(write=not check)
        except encryption.UndecryptableSecret as exc:
            raise CommandError(f"{exc} Nothing was re-encrypted.") from None
        noun, verb = ("secret", "opens") if count == 1 else ("secrets", "open")
        if check:
            self.stdout.write(
                f"{count} {noun} {verb} with the keys of {encryption.key_source()}; {older} with "
                "another key than the first (`manage.py rotate_secrets` re-encrypts them)."
            )
            return
        self.stdout.write(
            f"{count} {noun} re-encrypted with the first key of {encryption.key_source()}."
        )
