"""The requestor service of an organization: its Export/Import Config pages, runs and conflicts."""

import re

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models, transaction
from django.db.models.signals import pre_delete
from django.dispatch import receiver

from directory.constants import TRUST_LEVEL_MAX
from directory.models import LdapDirectory
from requestor.constants import DEFAULT_MAX_MESSAGE_SIZE, RunStatus, Trigger
from transport.constants import AddressType, address_type_of
from transport.validators import (
    validate_agent_address,
    validate_ex_address,
    validate_public_key,
    validate_smtp_address,
)

_domain = re.compile(r"^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")

# Options whose change alters what the master should hold for us: a full export follows.
EXPORT_OPTIONS = ("append_display_name", "modify_smtp_domain", "trust_level")
# Options whose change alters which contacts we should hold: a full import follows.
IMPORT_OPTIONS = ("import_container_id", "import_all_domains", "import_domains")
# Written by the engine under a row lock; an edit of the options leaves them alone.
SYNC_STATE = {
    "requestor_usn",
    "master_usn",
    "master_epoch",
    "sequence",
    "last_reply_sequence",
    "last_export_batch",
}


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


class RequestorConfig(models.Model):
    """The requestor service of an organization: what it exports, where it imports, its USNs."""

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
    dn = models.CharField(
        "EX address",
        max_length=1024,
        unique=True,
        validators=[validate_ex_address],
        help_text="DN of the requestor agent, e.g. /o=ORG1/ou=Site1/cn=Recipients/cn=REQUESTOR.",
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

    master_epoch = models.UUIDField(null=True, blank=True, editable=False)
    sequence = models.BigIntegerField(default=0, editable=False)
    last_reply_sequence = models.BigIntegerField(default=0, editable=False)
    last_export_batch = models.UUIDField(null=True, blank=True, editable=False)

    # The Schedule page: django-celery-beat entries that run this requestor's cycle (managed by
    # requestor/schedule.py; none means Execute Now only).
    schedule_tasks = models.ManyToManyField(
        "django_celery_beat.PeriodicTask", blank=True, editable=False, related_name="+"
    )

    class Meta:
        verbose_name = "requestor configuration"
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

    def domains(self) -> list[str] | None:
        """The SMTP domains to import, or None for all of them."""
        return None if self.import_all_domains else parse_domains(self.import_domains)

    def clean(self) -> None:
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

    def save(self, *args, **kwargs) -> None:
        if self.pk and kwargs.get("update_fields") is None and not kwargs.get("force_insert"):
            # An edit of the options must not write back sync state read before a cycle moved it.
            kwargs["update_fields"] = self._option_fields() | self._reset_usns_after_option_change()
        super().save(*args, **kwargs)

    def _option_fields(self) -> set[str]:
        return {
            f.name
            for f in self._meta.concrete_fields
            if not f.primary_key and f.name not in SYNC_STATE
        }

    def _reset_usns_after_option_change(self) -> set[str]:
        """Reset the USNs an option change invalidates; return the sync-state fields to write."""
        old = RequestorConfig.objects.filter(pk=self.pk).values(*EXPORT_OPTIONS, *IMPORT_OPTIONS)
        old = old.first()
        reset = set()
        if old is None:
            return reset
        if any(old[name] != getattr(self, name) for name in EXPORT_OPTIONS):
            self.request_full_export()
            reset |= {"requestor_usn", "last_export_batch"}
        if any(old[name] != getattr(self, name) for name in IMPORT_OPTIONS):
            self.master_usn = 0
            reset.add("master_usn")
        return reset

    def request_full_export(self) -> None:
        """Send everything again next cycle; replies to earlier batches acknowledge nothing."""
        self.requestor_usn = 0
        self.last_export_batch = None

    def export_all_recipients(self) -> None:
        """Export All Recipients: reset the requestor USN to 0 (a full export next cycle)."""
        self.request_full_export()
        RequestorConfig.objects.filter(pk=self.pk).update(requestor_usn=0, last_export_batch=None)
        # An LDAP directory is read whole again by the next scan.
        LdapDirectory.objects.filter(organization_id=self.organization_id).update(high_water="")

    def import_all_recipients(self) -> None:
        """Import All Recipients: reset the master USN to 0 (a full reply next cycle)."""
        self.master_usn = 0
        RequestorConfig.objects.filter(pk=self.pk).update(master_usn=0)
        # And every imported contact is written to an LDAP directory again, whatever changed.
        LdapDirectory.objects.filter(organization_id=self.organization_id).update(published_usn=0)


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
                ("mailbox", self.mailboxes),
                ("distribution_list", self.distribution_lists),
                ("custom_recipient", self.custom_recipients),
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

    def save(self, *args, **kwargs) -> None:
        with transaction.atomic():
            super().save(*args, **kwargs)
            self._request_full_export()

    def delete(self, *args, **kwargs):
        with transaction.atomic():
            self._request_full_export()
            return super().delete(*args, **kwargs)

    def _request_full_export(self) -> None:
        RequestorConfig.objects.filter(pk=self.config_id).update(
            requestor_usn=0, last_export_batch=None
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
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    parts_sent = models.PositiveIntegerField(default=0)
    exported = models.PositiveIntegerField(default=0)
    export_through = models.BigIntegerField(
        null=True, blank=True, help_text="Highest local USN the export covered."
    )
    acknowledged = models.BigIntegerField(null=True, blank=True)
    reply_parts = models.PositiveIntegerField(null=True, blank=True)
    reply_parts_applied = models.PositiveIntegerField(default=0)
    imported = models.PositiveIntegerField(default=0)
    updated = models.PositiveIntegerField(default=0)
    deleted = models.PositiveIntegerField(default=0)
    conflicts = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]

    def __str__(self) -> str:
        return f"{self.config.organization} run {self.pk} ({self.get_status_display()})"


class Conflict(models.Model):
    """A master entry that could not be imported because its address is taken here."""

    config = models.ForeignKey(RequestorConfig, on_delete=models.CASCADE, related_name="conflicts")
    global_key = models.CharField(max_length=200)
    origin = models.CharField("origin organization", max_length=64)
    display_name = models.CharField(max_length=256)
    address = models.CharField(max_length=256)
    reason = models.TextField()
    local_recipient = models.ForeignKey(
        "directory.Recipient", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    first_seen = models.DateTimeField(auto_now_add=True)
    last_seen = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-last_seen"]
        constraints = [
            models.UniqueConstraint(fields=["config", "global_key"], name="conflict_once_per_key")
        ]

    def __str__(self) -> str:
        return f"{self.address}: {self.reason}"


@receiver(pre_delete, sender=RequestorConfig)
def delete_schedule(sender, instance: RequestorConfig, **kwargs) -> None:
    """A requestor's schedule goes with it (beat would otherwise start cycles of nothing)."""
    instance.schedule_tasks.all().delete()
