"""The requestor service of an organization: its Export/Import Config pages, runs and conflicts."""

import re

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models.signals import pre_delete
from django.dispatch import receiver
from django.utils import timezone

from directory.constants import TRUST_LEVEL_MAX, Kind
from directory.models import LdapDirectory
from interorg_site.state import SettingsAndState
from requestor.constants import (
    DEFAULT_GRACE_DAYS,
    DEFAULT_IMPORT_DELETE_FLOOR,
    DEFAULT_IMPORT_DELETE_LIMIT,
    DEFAULT_IMPORT_DELETE_PERCENT,
    DEFAULT_MAX_MESSAGE_SIZE,
    MAX_GRACE_DAYS,
    RunAction,
    RunStatus,
    Trigger,
)
from transport.constants import AddressType, address_type_of
from transport.digest import EMPTY as EMPTY_DIGEST
from transport.validators import (
    validate_agent_address,
    validate_ex_address,
    validate_public_key,
    validate_smtp_address,
)

_address = re.compile(r"^[^@\s]{1,64}@[a-z0-9.-]{1,253}$")
_organization = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
_domain = re.compile(r"^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")

# Written by the engine under a row lock; an edit of the options leaves them alone.
SYNC_STATE = (
    "requestor_usn",
    "master_usn",
    "master_epoch",
    "master_fingerprint",
    "sequence",
    "last_export_batch",
    "exported_scope",
    "imported_under",
    "full_reply_pending",
    "full_reply_requested_at",
    "full_reply_batch",
    "set_aside_digest",
    "set_aside_count",
)


def parse_domains(text: str) -> list[str]:
    """Domains from a comma-, space- or newline-separated list, lowercased, without duplicates."""
    return sorted({d.strip().lower() for d in re.split(r"[\s,;]+", text) if d.strip()})


def validate_domain_list(text: str) -> None:
    bad = [d for d in parse_domains(text) if not _domain.match(d)]
    if bad:
        raise ValidationError(f"Not a valid domain: {', '.join(bad)}.")


def validate_domain(value: str) -> None:
    if value and not _domain.match(value.lower()):
        raise ValidationError(f"{value!r} is not a valid domain, such as org1.example.")


class UnstrippedCharField(models.CharField):
    """Text whose leading and trailing spaces matter, such as a display-name suffix " (ORG2)"."""

    def formfield(self, **kwargs):
        return super().formfield(**{"strip": False, **kwargs})


NEEDS_DN = "needs its own EX address (DN)"


class RequestorConfig(SettingsAndState):
    """The requestor service of an organization: what it exports, where it imports, its USNs."""

    state_fields = SYNC_STATE

    organization = models.OneToOneField(
        "directory.Organization", on_delete=models.CASCADE, related_name="requestor_config"
    )
    enabled = models.BooleanField(default=True)
    address = models.CharField(
        "SMTP address",
        max_length=256,
        unique=True,
        validators=[validate_smtp_address],
        help_text="The requestor agent's mailbox; the master replies here.",
    )
    # Replies come back to it only from a master in this installation (reached by its EX
    # address); a requestor that reaches its master by SMTP never uses one (model clean()).
    dn = models.CharField(
        "EX address",
        max_length=1024,
        blank=True,
        validators=[validate_ex_address],
        help_text="DN of the requestor agent, e.g. /o=ORG1/ou=Site1/cn=Recipients/cn=REQUESTOR; "
        "needed only when the master runs in this installation (reached by its EX address).",
    )

    # Export Config
    requestor_usn = models.BigIntegerField(
        "requestor USN", default=0, help_text="Own changes up to this USN reached the master."
    )
    master_usn = models.BigIntegerField(
        "master USN", default=0, help_text="Master changes up to this USN have been applied."
    )
    append_display_name = UnstrippedCharField(
        "append to display name",
        max_length=64,
        blank=True,
        help_text="Text appended to the display name of every exported recipient, e.g. ' (ORG2)'.",
    )
    modify_smtp_domain = models.CharField(
        "modify SMTP address",
        max_length=253,
        blank=True,
        validators=[validate_domain],
        help_text="Replace the domain of exported primary SMTP addresses with this one.",
    )
    max_message_size = models.PositiveIntegerField(
        "maximum message size",
        default=DEFAULT_MAX_MESSAGE_SIZE,
        validators=[MinValueValidator(16 * 1024)],
        help_text="Bytes; a larger export is split into several messages.",
    )
    trust_level = models.PositiveSmallIntegerField(
        default=0,
        validators=[MinValueValidator(0), MaxValueValidator(TRUST_LEVEL_MAX)],
        help_text="Export recipients whose trust level is at most this.",
    )

    # Import Config
    master_address = models.CharField(
        "master server address",
        max_length=1024,
        validators=[validate_agent_address],
        help_text="SMTP address of the master, or its DN (EX) when it runs in this installation.",
    )
    master_public_key = models.CharField(
        max_length=64,
        blank=True,
        validators=[validate_public_key],
        help_text="The master organization's Ed25519 public key (base64); replies must be signed "
        "with it.",
    )
    import_container = models.ForeignKey(
        "directory.Container",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name="container for importing",
    )
    import_all_domains = models.BooleanField("import all", default=True)
    import_domains = models.TextField(
        "domains to import",
        blank=True,
        validators=[validate_domain_list],
        help_text="SMTP domains to import, separated by commas or new lines.",
    )
    excluded_addresses = models.TextField(
        "addresses never to import",
        blank=True,
        help_text="SMTP addresses, one per line (or separated by commas); contacts already "
        "imported for them are removed at the next cycle.",
    )
    excluded_organizations = models.TextField(
        "organizations never to import",
        blank=True,
        help_text="Origin organizations (such as ORG3) whose entries are never imported.",
    )
    # The import guard (transport.holds).
    import_delete_limit = models.PositiveIntegerField(
        "hold replies removing more than",
        default=DEFAULT_IMPORT_DELETE_LIMIT,
        help_text="Contacts; a reply that would remove more is held for an administrator.",
    )
    import_delete_percent = models.PositiveSmallIntegerField(
        "or more than (%)",
        default=DEFAULT_IMPORT_DELETE_PERCENT,
        validators=[MaxValueValidator(100)],
        help_text="Percent of the imported contacts; 100 turns the percentage off.",
    )
    import_delete_floor = models.PositiveIntegerField(
        "percentage counts from",
        default=DEFAULT_IMPORT_DELETE_FLOOR,
        help_text="The percentage holds a reply only when it removes at least this many "
        "contacts; 0 counts from the first.",
    )
    grace_days = models.PositiveSmallIntegerField(
        "grace period (days)",
        default=DEFAULT_GRACE_DAYS,
        validators=[MaxValueValidator(MAX_GRACE_DAYS)],
        help_text="A contact whose entry is deleted is first hidden, and removed for good only "
        "after this many days; if the entry comes back meanwhile, the same contact is restored. "
        "0 removes it at once.",
    )

    master_epoch = models.UUIDField(null=True, blank=True, editable=False)
    master_fingerprint = models.CharField(
        max_length=32,
        blank=True,
        editable=False,
        help_text="The master's fingerprint of its ledger entry at our master USN: which history "
        "we followed, so that the master can tell when it was restored behind our back.",
    )
    sequence = models.BigIntegerField(default=0, editable=False)
    last_export_batch = models.UUIDField(null=True, blank=True, editable=False)
    exported_scope = models.JSONField(
        default=dict,
        blank=True,
        editable=False,
        help_text="The export scope the master holds our entries under (requestor.scope).",
    )
    imported_under = models.JSONField(
        default=dict,
        blank=True,
        editable=False,
        help_text="The import container and domains our contacts were imported under.",
    )
    full_reply_pending = models.BooleanField(
        default=False,
        editable=False,
        help_text="A full reply is asked for at every cycle until one is applied whole.",
    )
    full_reply_requested_at = models.DateTimeField(null=True, blank=True, editable=False)
    full_reply_batch = models.UUIDField(null=True, blank=True, editable=False)
    set_aside_digest = models.CharField(max_length=32, default=EMPTY_DIGEST, editable=False)
    set_aside_count = models.IntegerField(
        default=0,
        editable=False,
        help_text="Master entries known but not imported (conflicts, domains not imported).",
    )

    # The Schedule page: django-celery-beat entries that run this requestor's cycle (managed by
    # requestor/schedule.py; none means Execute Now only).
    schedule_tasks = models.ManyToManyField(
        "django_celery_beat.PeriodicTask", blank=True, editable=False, related_name="+"
    )

    class Meta:
        verbose_name = "requestor configuration"
        constraints = [
            # Unique when given; any number of requestors reached over SMTP go without one.
            models.UniqueConstraint(
                fields=["dn"],
                condition=~models.Q(dn=""),
                name="requestor_dn_unique_when_given",
                violation_error_message="Another requestor already has this EX address.",
            )
        ]
        permissions = [
            ("execute_now", "Can run a requestor cycle now (Execute Now)"),
            ("reset_usns", "Can reset USNs (Import All / Export All Recipients)"),
        ]

    def __str__(self) -> str:
        return f"Requestor of {self.organization}"

    @property
    def master_address_type(self) -> str:
        return address_type_of(self.master_address)

    @property
    def addresses(self) -> set[str]:
        return {self.address.lower(), self.dn.lower()}

    @property
    def own_address(self) -> str:
        """The address replies come back to: the DN when the master is in this installation."""
        return self.dn if self.master_address_type == AddressType.EX else self.address

    def clean_fields(self, exclude=None) -> None:
        """The fields' own checks, and the exclusion lists', all reported together."""
        errors: dict[str, list] = {}
        try:
            super().clean_fields(exclude)
        except ValidationError as exc:
            errors = exc.update_error_dict(errors)
        exclude = set(exclude or ())
        addresses, organizations = self.excluded()
        bad = [a for a in addresses if not _address.match(a)]
        if bad and "excluded_addresses" not in exclude:
            errors.setdefault("excluded_addresses", []).append(
                f"Not an SMTP address: {', '.join(sorted(bad)[:5])}."
            )
        bad = [o for o in organizations if not _organization.match(o)]
        if bad and "excluded_organizations" not in exclude:
            errors.setdefault("excluded_organizations", []).append(
                "Not an organization name (letters, digits, '.', '_', '-'): "
                f"{', '.join(sorted(bad)[:5])}."
            )
        if errors:
            raise ValidationError(errors)

    def domains(self) -> list[str] | None:
        """The SMTP domains to import, or None for all of them."""
        return None if self.import_all_domains else parse_domains(self.import_domains)

    def clean(self) -> None:
        if self.master_address and self.master_address_type == AddressType.EX and not self.dn:
            # Not tied to a field: the pages edit the two addresses on different forms.
            raise ValidationError(
                f"The master is reached by its EX address, so its replies come back to this "
                f"requestor's EX address: the requestor {NEEDS_DN}, such as "
                f"/o=ORG2/ou=Site2/cn=Recipients/cn=REQUESTOR (Export Config), or give the "
                f"master's SMTP address."
            )
        container = self.import_container
        if container is not None:
            if container.organization_id != self.organization_id:
                raise ValidationError(
                    {"import_container": "Choose a container of this organization."}
                )
            if self.pk:
                for exported in self.exported_containers.select_related("container"):
                    if container.is_within(exported.container):
                        raise ValidationError(
                            {
                                "import_container": f"{container.dn} is, or lies inside, the "
                                f"exported container {exported.container.dn}; imported contacts "
                                "would be exported again. Choose a container outside every "
                                "exported one."
                            }
                        )
        if not self.import_all_domains and not parse_domains(self.import_domains):
            raise ValidationError(
                {"import_domains": "List the domains to import, or check Import all."}
            )

    def excluded(self) -> tuple[set[str], set[str]]:
        """The addresses and the origin organizations never to import, lowercased."""
        return (
            {a.strip().lower() for a in re.split(r"[\s,;]+", self.excluded_addresses) if a},
            {o.strip().lower() for o in re.split(r"[\s,;]+", self.excluded_organizations) if o},
        )

    def import_options(self) -> dict:
        """Where contacts go, which domains are imported and what never is: their change needs
        a full reply."""
        options = {"container": self.import_container_id, "domains": self.domains()}
        addresses, organizations = self.excluded()
        if addresses or organizations:
            options["excluded"] = [sorted(addresses), sorted(organizations)]
        return options

    def request_full_export(self) -> None:
        """Send everything again next cycle; replies to earlier batches acknowledge nothing."""
        self.requestor_usn = 0
        self.last_export_batch = None
        RequestorConfig.objects.filter(pk=self.pk).update(requestor_usn=0, last_export_batch=None)

    def request_full_reply(self) -> None:
        """Ask the master for a full reply at every cycle until one has been applied whole; the
        contacts it no longer lists are then removed (docs/protocol.md, rule 6)."""
        self.full_reply_pending = True
        self.full_reply_requested_at = timezone.now()
        RequestorConfig.objects.filter(pk=self.pk).update(
            full_reply_pending=True, full_reply_requested_at=self.full_reply_requested_at
        )

    def export_all_recipients(self) -> None:
        """Export All Recipients: reset the requestor USN to 0 (a full export next cycle)."""
        self.request_full_export()
        self._judge_as_repair(Verification.Side.EXPORT, "Export All requested.")
        # An LDAP directory is read whole again by the next scan.
        LdapDirectory.objects.filter(organization_id=self.organization_id).update(high_water="")

    def import_all_recipients(self) -> None:
        """Import All Recipients: reset the master USN to 0 and ask for a full reply."""
        self.master_usn = 0
        RequestorConfig.objects.filter(pk=self.pk).update(master_usn=0)
        self.request_full_reply()
        self._judge_as_repair(Verification.Side.IMPORT, "Import All requested.")
        # And every imported contact is written to an LDAP directory again, whatever changed.
        LdapDirectory.objects.filter(organization_id=self.organization_id).update(published_usn=0)

    def _judge_as_repair(self, side: str, detail: str) -> None:
        """The check after an administrator's Import All or Export All judges it as a repair:
        a difference left after it is reported, not repaired again."""
        Verification.objects.update_or_create(
            config=self,
            side=side,
            defaults={
                "state": Verification.State.REPAIRING,
                "repair_pending": True,
                "repair_requested_at": timezone.now(),
                "detail": detail,
            },
        )


class ExportedContainer(models.Model):
    """A container (and everything inside it) whose recipients of the checked kinds are exported."""

    config = models.ForeignKey(
        RequestorConfig, on_delete=models.CASCADE, related_name="exported_containers"
    )
    container = models.ForeignKey("directory.Container", on_delete=models.CASCADE, related_name="+")
    mailboxes = models.BooleanField(default=True)
    distribution_lists = models.BooleanField(default=True)
    custom_recipients = models.BooleanField(default=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["config", "container"], name="exported_container_once")
        ]

    def __str__(self) -> str:
        return self.container.dn

    def kinds(self) -> set[str]:
        return {
            kind
            for kind, checked in (
                (Kind.MAILBOX, self.mailboxes),
                (Kind.DISTRIBUTION_LIST, self.distribution_lists),
                (Kind.CUSTOM_RECIPIENT, self.custom_recipients),
            )
            if checked
        }

    def clean(self) -> None:
        if not self.container_id or not self.config_id:
            return
        if self.container.organization_id != self.config.organization_id:
            raise ValidationError({"container": "Choose a container of this organization."})
        imported = self.config.import_container
        if imported is not None and imported.is_within(self.container):
            raise ValidationError(
                {
                    "container": f"The import container {imported.dn} lies inside "
                    f"{self.container.dn}; imported contacts would be exported again."
                }
            )


class Run(models.Model):
    """One requestor cycle: the export it sent and what the master's reply changed."""

    config = models.ForeignKey(RequestorConfig, on_delete=models.CASCADE, related_name="runs")
    trigger = models.CharField(max_length=16, choices=Trigger.choices)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True
    )
    status = models.CharField(max_length=16, choices=RunStatus.choices, default=RunStatus.RUNNING)
    batch = models.UUIDField(null=True, blank=True, db_index=True)
    full_export = models.BooleanField(default=False)
    # Import All or Export All, when an administrator pressed one of them (requestor.actions).
    action = models.CharField(max_length=16, choices=RunAction.choices, default="", blank=True)
    full_reply = models.BooleanField(
        default=False, help_text="The master's reply to it was full (it listed every entry)."
    )
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    parts_sent = models.PositiveIntegerField(default=0)
    exported = models.PositiveIntegerField(default=0)
    export_through = models.BigIntegerField(
        null=True, blank=True, help_text="Highest local USN the export covered."
    )
    acknowledged = models.BigIntegerField(null=True, blank=True)
    master_lag = models.BigIntegerField(
        null=True,
        blank=True,
        help_text="Master USNs the reply to this run covered: how far behind its master the "
        "requestor was when the master answered (the dashboard's lag, before this run applied).",
    )
    reply_parts = models.PositiveIntegerField(null=True, blank=True)
    reply_parts_applied = models.PositiveIntegerField(default=0)
    imported = models.PositiveIntegerField(default=0)
    updated = models.PositiveIntegerField(default=0)
    deleted = models.PositiveIntegerField(default=0)
    conflicts = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    attempts = models.PositiveSmallIntegerField(
        default=1, help_text="Attempts of the cycle (more than one after a database error)."
    )
    repair = models.CharField(
        max_length=16,
        blank=True,
        help_text="The repair this run carried (import: a full reply; export: a full export).",
    )
    verification = models.JSONField(
        default=dict,
        blank=True,
        help_text="What the checks of this run's reply found, per side.",
    )

    class Meta:
        ordering = ["-started_at", "-id"]

    def __str__(self) -> str:
        return f"{self.config.organization} run {self.pk} ({self.get_status_display()})"

    @property
    def quiet(self) -> bool:
        """Completed having exchanged nothing: no changes went out, and the reply changed
        nothing."""
        return (
            self.status == RunStatus.OK
            and self.exported == 0
            and self.imported + self.updated + self.deleted == 0
        )


class Conflict(models.Model):
    """A master entry that could not be imported because its address is taken here. The entry
    is kept whole, so that it is imported by itself once the address is free."""

    config = models.ForeignKey(RequestorConfig, on_delete=models.CASCADE, related_name="conflicts")
    global_key = models.CharField(max_length=200)
    origin = models.CharField("origin organization", max_length=64)
    display_name = models.CharField(max_length=256)
    address = models.CharField(max_length=256)
    reason = models.TextField()
    local_recipient = models.ForeignKey(
        "directory.Recipient", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    master_usn = models.BigIntegerField("master USN", default=0)
    kind = models.CharField(max_length=32, choices=Kind.choices, default=Kind.MAILBOX)
    attrs = models.JSONField(default=dict, blank=True)
    first_seen = models.DateTimeField(auto_now_add=True)
    last_seen = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-last_seen"]
        constraints = [
            models.UniqueConstraint(fields=["config", "global_key"], name="conflict_once_per_key")
        ]

    def __str__(self) -> str:
        return f"{self.address}: {self.reason}"


class FilteredEntry(models.Model):
    """A master entry left out by the Import Config: its SMTP domain is not imported, or its
    address or origin organization is excluded."""

    class Reason(models.TextChoices):
        DOMAIN = "domain", "domain not imported"
        ADDRESS = "address", "address excluded"
        ORGANIZATION = "organization", "organization excluded"

    config = models.ForeignKey(
        RequestorConfig, on_delete=models.CASCADE, related_name="filtered_entries"
    )
    global_key = models.CharField(max_length=200)
    origin = models.CharField("origin organization", max_length=64)
    address = models.CharField(max_length=256)
    master_usn = models.BigIntegerField("master USN")
    reason = models.CharField(max_length=16, choices=Reason.choices, default=Reason.DOMAIN)

    class Meta:
        verbose_name_plural = "filtered entries"
        constraints = [
            models.UniqueConstraint(fields=["config", "global_key"], name="filtered_once_per_key")
        ]

    def __str__(self) -> str:
        return f"{self.address} ({self.get_reason_display()})"


class Verification(models.Model):
    """The latest check of one side of an organization's copy against its master's digests
    (docs/protocol.md, rule 10): what it holds of the others, or what the master holds of it."""

    class Side(models.TextChoices):
        IMPORT = "import", "What this organization holds of the others"
        EXPORT = "export", "What the master holds of this organization"

    class State(models.TextChoices):
        UNKNOWN = "unknown", "Not verified yet"
        VERIFIED = "verified", "Verified in sync"
        REPAIRING = "repairing", "Repairing"
        DIVERGED = "diverged", "Diverged"

    config = models.ForeignKey(
        RequestorConfig, on_delete=models.CASCADE, related_name="verifications"
    )
    side = models.CharField(max_length=8, choices=Side.choices)
    state = models.CharField(max_length=16, choices=State.choices, default=State.UNKNOWN)
    checked_at = models.DateTimeField(null=True, blank=True)
    verified_at = models.DateTimeField(null=True, blank=True)
    local_digest = models.CharField(max_length=32, blank=True)
    local_count = models.IntegerField(null=True, blank=True)
    master_digest = models.CharField(max_length=32, blank=True)
    master_count = models.IntegerField(null=True, blank=True)
    detail = models.TextField(blank=True)
    repair_pending = models.BooleanField(
        default=False, help_text="A repair was asked for and has not been carried out yet."
    )
    repair_requested_at = models.DateTimeField(null=True, blank=True)
    repaired_at = models.DateTimeField(null=True, blank=True)
    repairs = models.PositiveIntegerField(default=0, help_text="Automatic repairs so far.")
    last_repair_differed = models.IntegerField(
        null=True, blank=True, help_text="How many entries the last repair changed."
    )

    class Meta:
        ordering = ["config", "side"]
        constraints = [
            models.UniqueConstraint(fields=["config", "side"], name="verification_once_per_side")
        ]

    def __str__(self) -> str:
        return f"{self.config.organization} {self.side}: {self.state}"


@receiver(pre_delete, sender=RequestorConfig)
def delete_schedule(sender, instance: RequestorConfig, **kwargs) -> None:
    """A requestor's schedule goes with it (beat would otherwise start cycles of nothing)."""
    instance.schedule_tasks.all().delete()


class ImportedChange(models.Model):
    """One change an import made to an organization's address book (a contact added, updated,
    hidden, restored or removed for good, an entry set aside): the history of an entry and the
    address book as of a time are read from these."""

    class Op(models.TextChoices):
        ADDED = "added", "added"
        UPDATED = "updated", "updated"
        HIDDEN = "hidden", "hidden (grace period)"
        RESTORED = "restored", "restored"
        REMOVED = "removed", "removed"
        SET_ASIDE = "set_aside", "set aside"

    # In the address book after the change.
    PRESENT = (Op.ADDED, Op.UPDATED, Op.RESTORED)

    # No index of its own: imported_change_key starts with it. No constraint in the database
    # either (one check per row at commit, for every contact a full reply writes): the run's
    # is kept, and a run belongs to the organization's requestor. Deleting an organization
    # deletes its history; only the purge's rows, which name no run, rest on that alone.
    organization = models.ForeignKey(
        "directory.Organization",
        on_delete=models.CASCADE,
        related_name="imported_changes",
        db_index=False,
        db_constraint=False,
    )
    global_key = models.CharField(max_length=200)
    origin = models.CharField("origin organization", max_length=64)
    op = models.CharField(max_length=16, choices=Op.choices)
    master_usn = models.BigIntegerField("master USN", null=True, blank=True)
    display_name = models.CharField(max_length=256, blank=True)
    primary_smtp = models.CharField("primary SMTP address", max_length=256, blank=True)
    detail = models.CharField(max_length=256, blank=True)
    # The reply part that made it (none for the grace period's purge), and the run it answered.
    batch = models.UUIDField(null=True, blank=True)
    # Checked once per statement by triggers, not row by row (directory.references).
    run = models.ForeignKey(
        Run,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        db_constraint=False,
    )
    at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [
            models.Index(fields=["organization", "global_key", "at"], name="imported_change_key"),
            # The changes of one batch's versions (console.batch): a master USN range.
            models.Index(fields=["organization", "master_usn"], name="imported_change_usn"),
        ]

    def __str__(self) -> str:
        return f"{self.global_key} {self.op} at {self.at:%Y-%m-%d %H:%M}"

    @property
    def present(self) -> bool:
        return self.op in self.PRESENT
