"""The master database: allowlisted requestors, global entries and the USN ledger."""

import uuid

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from directory.constants import Kind
from interorg_site.state import SettingsAndState
from master.constants import (
    DEFAULT_DELETE_FLOOR,
    DEFAULT_DELETE_LIMIT,
    DEFAULT_DELETE_PERCENT,
    DEFAULT_MAX_ATTACHMENT_SIZE,
    DEFAULT_QUARANTINE_AFTER_REFUSALS,
    DEFAULT_TOMBSTONE_LIFETIME_DAYS,
)
from transport.constants import AddressType, Op
from transport.digest import EMPTY as EMPTY_DIGEST
from transport.validators import (
    validate_agent_address,
    validate_ex_address,
    validate_public_key,
    validate_smtp_address,
)

DAY = 24 * 3600


class MasterConfig(SettingsAndState):
    """The master service of an organization (the InterOrg Master Configuration page)."""

    # Written by master.processing under this row's lock, or by a command naming them.
    state_fields = ("usn", "epoch", "purged_through_usn", "sequence", "history")
    state_fields += ("reply_digest", "reply_count")

    organization = models.OneToOneField(
        "directory.Organization", on_delete=models.CASCADE, related_name="master_config"
    )
    address = models.CharField(
        "SMTP address",
        max_length=256,
        unique=True,
        validators=[validate_smtp_address],
        help_text="Where requestors in other organizations send their exports.",
    )
    dn = models.CharField(
        "EX address",
        max_length=1024,
        unique=True,
        validators=[validate_ex_address],
        help_text="DN used by a requestor of this installation, e.g. "
        "/o=ORG1/ou=Site1/cn=Recipients/cn=MASTER.",
    )
    max_attachment_size = models.PositiveIntegerField(
        "e-mail attachment size",
        default=DEFAULT_MAX_ATTACHMENT_SIZE,
        validators=[MinValueValidator(16 * 1024)],
        help_text="Largest message (bytes) the master generates; set it to the lowest limit "
        "of any requestor's mail system.",
    )
    tombstone_lifetime_days = models.PositiveIntegerField(
        default=DEFAULT_TOMBSTONE_LIFETIME_DAYS, validators=[MinValueValidator(1)]
    )
    enabled = models.BooleanField(default=True)
    quarantine_after_refusals = models.PositiveIntegerField(
        "quarantine after refused messages",
        default=DEFAULT_QUARANTINE_AFTER_REFUSALS,
        help_text="A requestor whose messages are refused this many times in a row (a bad "
        "signature, a wrong sender) is quarantined; 0 never quarantines one automatically.",
    )
    usn = models.BigIntegerField("master USN", default=0, editable=False)
    epoch = models.UUIDField(default=uuid.uuid4, editable=False)
    purged_through_usn = models.BigIntegerField(
        default=0, editable=False, help_text="Highest USN of a tombstone purged so far."
    )
    sequence = models.BigIntegerField(default=0, editable=False)
    history = models.CharField(
        max_length=32,
        default=EMPTY_DIGEST,
        editable=False,
        help_text="Fingerprint of the whole ledger so far: each entry chains onto the previous.",
    )
    reply_digest = models.CharField(max_length=32, default=EMPTY_DIGEST, editable=False)
    reply_count = models.IntegerField(
        default=0, editable=False, help_text="Live entries, all requestors together."
    )

    class Meta:
        verbose_name = "master configuration"

    def __str__(self) -> str:
        return f"Master of {self.organization}"

    def clean(self) -> None:
        horizon = settings.INTERORG_REPLAY_HORIZON_SECONDS
        if self.tombstone_lifetime_days * DAY < horizon:
            days = -(-horizon // DAY)
            raise ValidationError(
                {
                    "tombstone_lifetime_days": f"Keep tombstones at least {days} days: the "
                    "replay window plus a mail queue's lifetime (INTERORG_REPLAY_WINDOW_SECONDS "
                    "+ INTERORG_MAIL_QUEUE_LIFETIME_SECONDS). A shorter lifetime would let an "
                    "export delayed in the mail bring back an entry whose tombstone is gone; "
                    "or lower those settings."
                }
            )


class AllowedRequestor(SettingsAndState):
    """A requestor agent the master accepts exports from, and what the master knows of it."""

    # Written by master.processing under the master's row lock, or by master.quarantine.
    state_fields = ("quarantined_at", "quarantine_reason", "quarantined_by", "refusals")
    state_fields += ("full_export_wanted", "acked_usn", "pending_ranges", "reported_master_usn")
    state_fields += ("sent_master_usn", "last_sequence", "last_contact_at")
    state_fields += ("reply_digest", "reply_count", "export_digest", "export_count")

    master = models.ForeignKey(MasterConfig, on_delete=models.CASCADE, related_name="requestors")
    address = models.CharField(
        max_length=1024,
        validators=[validate_agent_address],
        help_text="SMTP address of the requestor agent, or its DN when it runs in this "
        "installation.",
    )
    organization_name = models.CharField(
        max_length=64, help_text="The organization this requestor speaks for, such as ORG2."
    )
    label = models.CharField(max_length=256, blank=True)
    enabled = models.BooleanField(default=True)
    public_key = models.CharField(
        max_length=64,
        blank=True,
        validators=[validate_public_key],
        help_text="The requestor organization's Ed25519 public key (base64); its exports must be "
        "signed with it.",
    )

    # The mass-delete guard (transport.holds).
    delete_limit = models.PositiveIntegerField(
        "hold exports deleting more than",
        default=DEFAULT_DELETE_LIMIT,
        help_text="Entries; an export that would delete more is held for an administrator.",
    )
    delete_percent = models.PositiveSmallIntegerField(
        "or more than (%)",
        default=DEFAULT_DELETE_PERCENT,
        validators=[MaxValueValidator(100)],
        help_text="Percent of this requestor's live entries at the master; 100 turns the "
        "percentage off.",
    )
    delete_floor = models.PositiveIntegerField(
        "percentage counts from",
        default=DEFAULT_DELETE_FLOOR,
        help_text="The percentage holds an export only when it deletes at least this many "
        "entries (so that removing one person of four is not held); 0 counts from the first.",
    )
    quarantined_at = models.DateTimeField(null=True, blank=True, editable=False)
    quarantine_reason = models.TextField(blank=True, editable=False)
    quarantined_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        editable=False,
        related_name="+",
    )
    refusals = models.PositiveIntegerField(
        default=0, editable=False, help_text="Messages refused in a row (signature, sender)."
    )
    full_export_wanted = models.BooleanField(
        default=False,
        editable=False,
        help_text="A held export was rejected: replies ask for a full export until one comes.",
    )

    acked_usn = models.BigIntegerField(
        default=0, editable=False, help_text="Highest requestor USN held contiguously."
    )
    pending_ranges = models.JSONField(default=list, blank=True, editable=False)
    reported_master_usn = models.BigIntegerField(
        default=0,
        editable=False,
        help_text="The master USN the requestor said, in its latest export, it had imported.",
    )
    sent_master_usn = models.BigIntegerField(
        default=0,
        editable=False,
        help_text="The master USN the latest reply to it went through.",
    )
    last_sequence = models.BigIntegerField(default=0, editable=False)
    last_contact_at = models.DateTimeField(null=True, blank=True, editable=False)
    # Digests of this requestor's live entries (transport.digest): as (global key, master USN),
    # which the other requestors' replies are checked against, and as (object id, source USN),
    # which this requestor checks its own export scope against.
    reply_digest = models.CharField(max_length=32, default=EMPTY_DIGEST, editable=False)
    reply_count = models.IntegerField(default=0, editable=False)
    export_digest = models.CharField(max_length=32, default=EMPTY_DIGEST, editable=False)
    export_count = models.IntegerField(default=0, editable=False)

    class Meta:
        ordering = ["organization_name"]
        constraints = [
            models.UniqueConstraint(fields=["master", "address"], name="requestor_address_unique"),
            models.UniqueConstraint(
                fields=["master", "organization_name"], name="requestor_org_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.organization_name} <{self.address}>"

    @property
    def unsent(self) -> int:
        """Master changes not yet sent to this requestor: the master's USN minus the USN its
        latest reply (or, if further, its latest export's report) went through. Once that reply
        is imported, this is the requestor's own lag (console.status.OrgStatus.lag)."""
        return max(0, self.master.usn - max(self.sent_master_usn, self.reported_master_usn))

    @property
    def address_type(self) -> str:
        return AddressType.EX if self.address.startswith("/") else AddressType.SMTP

    @property
    def quarantined(self) -> bool:
        return self.quarantined_at is not None


class ReceivedBatch(models.Model):
    """Which parts of one export batch have arrived, and whether it was answered."""

    requestor = models.ForeignKey(
        AllowedRequestor, on_delete=models.CASCADE, related_name="batches"
    )
    batch = models.UUIDField()
    parts = models.PositiveIntegerField()
    received_parts = models.JSONField(default=list)
    full = models.BooleanField(default=False)
    master_usn = models.BigIntegerField(default=0)
    master_epoch = models.UUIDField(null=True, blank=True)
    master_fingerprint = models.CharField(max_length=32, blank=True)
    sequence = models.BigIntegerField(default=0, help_text="The sequence of its first part.")
    changed = models.IntegerField(
        default=0, help_text="Entries the batch changed (its full export's sweep included)."
    )
    deleted = models.IntegerField(
        default=0, help_text="Live entries the batch deleted so far (the mass-delete guard)."
    )
    live_at_start = models.IntegerField(
        default=0, help_text="The requestor's live entries when the batch's first part came."
    )
    replied = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["requestor", "batch"], name="received_batch_unique")
        ]

    def __str__(self) -> str:
        return f"{self.batch} ({len(self.received_parts)}/{self.parts})"

    @property
    def complete(self) -> bool:
        return len(self.received_parts) >= self.parts


class GlobalEntry(models.Model):
    """The master's current state of one object exported by one requestor (or its tombstone)."""

    # No indexes of their own: the unique constraints start with each.
    # No constraint in the database: the requestor's is enough (a requestor belongs to its
    # master, and the database keeps both; directory.models.Recipient.organization says why).
    master = models.ForeignKey(
        MasterConfig,
        on_delete=models.CASCADE,
        related_name="entries",
        db_index=False,
        db_constraint=False,
    )
    # Checked once per statement by triggers, not row by row (directory.references).
    requestor = models.ForeignKey(
        AllowedRequestor,
        on_delete=models.PROTECT,
        related_name="entries",
        db_index=False,
        db_constraint=False,
    )
    object_id = models.UUIDField("source object GUID")
    global_key = models.CharField(max_length=200)
    origin = models.CharField("origin organization", max_length=64)
    kind = models.CharField(max_length=32, choices=Kind.choices)
    attrs = models.JSONField(default=dict)
    deleted = models.BooleanField(default=False)
    source_usn = models.BigIntegerField("source USN")
    usn = models.BigIntegerField(
        "master USN", default=0, help_text="0 while the master has nothing to publish for it."
    )
    full_batch = models.UUIDField(null=True, blank=True, editable=False)
    changed_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "global entries"
        ordering = ["-usn"]
        indexes = [models.Index(fields=["master", "usn"], name="global_entry_master_usn")]
        constraints = [
            models.UniqueConstraint(
                fields=["requestor", "object_id"], name="global_entry_object_unique"
            ),
            models.UniqueConstraint(fields=["master", "global_key"], name="global_key_unique"),
        ]

    def __str__(self) -> str:
        return self.attrs.get("display_name") or self.global_key


class LedgerEntry(models.Model):
    """One accepted change, in master USN order: the append-only history of the master database."""

    Op = Op

    # No index of its own: ledger_usn_unique starts with it. This key and the message's are
    # checked once per statement by triggers, not row by row (directory.references): the
    # master writes its ledger while holding its row lock.
    master = models.ForeignKey(
        MasterConfig,
        on_delete=models.CASCADE,
        related_name="ledger",
        db_index=False,
        db_constraint=False,
    )
    usn = models.BigIntegerField("master USN")
    global_key = models.CharField(max_length=200)
    origin = models.CharField(max_length=64)
    op = models.CharField(max_length=8, choices=Op.choices)
    source_usn = models.BigIntegerField("source USN", null=True)
    attrs = models.JSONField(default=dict)
    message = models.ForeignKey(
        "transport.Message",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        db_constraint=False,
    )
    chain = models.CharField(
        max_length=32,
        default="",
        help_text="Fingerprint of the ledger through this entry: requestors report it back, so "
        "that a master restored from a backup knows when it hands out a USN a second time.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "USN ledger entry"
        verbose_name_plural = "USN ledger"
        ordering = ["-usn"]
        indexes = [models.Index(fields=["master", "global_key", "usn"], name="ledger_entry_key")]
        constraints = [
            models.UniqueConstraint(fields=["master", "usn"], name="ledger_usn_unique"),
            models.CheckConstraint(condition=Q(usn__gt=0), name="ledger_usn_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.usn} {self.op} {self.global_key}"
