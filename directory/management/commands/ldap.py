"""An LDAP or Active Directory organization's directory from the command line: check, scan,
write contacts."""

from django.core.management.base import BaseCommand, CommandError

from directory.backends import DirectoryUnavailable, ldap_missing, modules
from directory.commands import organization_named
from directory.models import LdapDirectory


class Command(BaseCommand):
    help = (
        "check: bind and count the recipients; scan: read LDAP's changes into the mirror now; "
        "publish: write the imported contacts to LDAP now (--force: compare every one)."
    )

    def add_arguments(self, parser):
        parser.add_argument("action", choices=["check", "scan", "publish"])
        parser.add_argument("organization", help="Short name of the organization, such as ORG2.")
        parser.add_argument("--force", action="store_true", help="publish: even if unchanged.")

    def handle(self, *args, action: str, organization: str, force: bool, **options):
        org = organization_named(organization)
        directory = LdapDirectory.objects.filter(organization=org).first()
        if directory is None or not org.uses_ldap:
            raise CommandError(f"{org.name} does not keep its directory in LDAP.")
        if ldap_missing():
            raise CommandError(ldap_missing())
        from directory.ldap import connection

        scan, publish = modules(org)

        try:
            if action == "check" and org.uses_ad:
                from directory.ad.check import check

                dc = check(directory)
                self.stdout.write(
                    f"{directory.uri} {directory.base_dn}: {dc.recipients} recipients; domain "
                    f"controller {dc.host}, highest committed USN {dc.highest_usn}; "
                    f"{dc.controls(', ')}"
                )
                return
            if action == "check":
                found = connection.check(directory)
                self.stdout.write(f"{directory.uri} {directory.base_dn}: {found} recipients")
                return
            if action == "scan":
                result = scan.scan(org.pk)
                summary = (
                    f"read {result.read}, created {result.created}, updated {result.updated}, "
                    f"deleted {result.deleted}"
                )
                if getattr(result, "full", False):
                    summary += f"; compared in full: {result.reason}"
            else:
                result = publish.publish(org.pk, force=force)
                summary = (
                    f"added {result.added}, modified {result.modified}, renamed "
                    f"{result.renamed}, deleted {result.deleted}"
                )
        except DirectoryUnavailable as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"{org.name}: {summary}")
        for problem in result.problems:
            self.stderr.write(f"  left out: {problem}")
