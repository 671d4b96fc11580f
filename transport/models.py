"""The message archive: every message of both directions, kept with its parsed summary."""

from django.conf import settings
from django.db import models
from django.db.models.functions import Lower, Upper

from interorg_site.encryption import EncryptedTextField
from transport.constants import AddressType, Direction, MessageKind, Status


class Message(models.Model):
    """One message part sent or received by an agent of this installation."""

    direction = models.CharField(max_length=3, choices=Direction.choices)
    status = models.CharField(max_length=16, choices=Status.choices)
    kind = models.CharField(max_length=16, choices=MessageKind.choices, default=MessageKind.UNKNOWN)
    organization = models.ForeignKey(
        "directory.Organization",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="messages",
        help_text="The local organization that sent or received it.",
    )
    sender = models.CharField(max_length=1024)
    recipient = models.CharField(max_length=1024)
    address_type = models.CharField(
        max_length=8, choices=AddressType.choices, default=AddressType.EX
    )
    batch = models.UUIDField(null=True, blank=True, db_index=True)
    part = models.PositiveIntegerField(null=True, blank=True)
    parts = models.PositiveIntegerField(null=True, blank=True)
    sequence = models.BigIntegerField(null=True, blank=True)
    usn_from = models.BigIntegerField("USN after", null=True, blank=True)
    usn_through = models.BigIntegerField("USN through", null=True, blank=True)
    size = models.PositiveIntegerField(
        default=0,
        help_text="Size of the payload in bytes (of the whole mail, for one rejected on arrival).",
    )
    payload = models.BinaryField(
        help_text="The gzip-compressed JSON document, as on the wire; the whole mail for one "
        "rejected on arrival whose body is kept; empty once its body is dropped."
    )
    digest = models.CharField(
        "SHA-256", max_length=64, blank=True, help_text="Digest of the mail as it arrived."
    )
    headers = models.TextField(blank=True, help_text="The mail's header, as it arrived (cut).")
    body_dropped = models.BooleanField(
        default=False,
        help_text="Rejected before a signature vouched for it: only its header, size and digest "
        "are kept (transport.archive).",
    )
    body_kept_until = models.DateTimeField(
        null=True,
        blank=True,
        help_text="A rejected body kept by INTERORG_KEEP_REJECTED_BODIES is dropped then.",
    )
    summary = models.JSONField(default=dict, blank=True)
    signature = models.TextField(
        blank=True, help_text="Ed25519 signature of the payload by the sender's key (base64)."
    )
    key_fingerprint = models.CharField(
        max_length=64, blank=True, help_text="Fingerprint of the key that signed it."
    )
    message_id = models.CharField(
        "Message-ID", max_length=998, blank=True, db_index=True, help_text="RFC 5322 Message-ID."
    )
    error = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(
        null=True, blank=True, help_text="When sending is tried again after a temporary failure."
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["direction", "status"], name="message_direction_status"),
            # The replay check looks up a sender's accepted sequences case-insensitively.
            models.Index(Upper("sender"), "sequence", name="message_sender_sequence"),
        ]
        constraints = [
            # Two copies of one mail arriving at once (a relay's retry racing the first) are
            # archived once: the second insert waits for the first and fails.
            models.UniqueConstraint(
                Lower("sender"),
                Lower("recipient"),
                "message_id",
                condition=models.Q(direction="in") & ~models.Q(message_id=""),
                name="inbound_mail_once",
            )
        ]

    def __str__(self) -> str:
        part = f" part {self.part}/{self.parts}" if self.parts else ""
        return f"{self.get_kind_display()}{part} {self.sender} → {self.recipient}"

    @property
    def usn_range(self) -> str:
        if self.usn_from is None:
            return ""
        return f"({self.usn_from}, {self.usn_through}]"


class SigningKey(models.Model):
    """An Ed25519 key pair with which an organization signs the messages of its agents."""

    organization = models.ForeignKey(
        "directory.Organization", on_delete=models.CASCADE, related_name="signing_keys"
    )
    public_key = models.CharField(max_length=64, help_text="Raw public key, base64.")
    private_key = EncryptedTextField(
        editable=False, help_text="Raw private key, base64; encrypted at rest."
    )
    fingerprint = models.CharField(max_length=64, unique=True)
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    retired_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["organization", "-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["organization"],
                condition=models.Q(active=True),
                name="one_active_signing_key_per_org",
            )
        ]

    def __str__(self) -> str:
        return f"{self.organization} key {self.fingerprint[:16]}"


class Hold(models.Model):
    """A batch an agent of this installation keeps instead of applying (it would delete more than
    the organization's threshold), waiting for an administrator to approve or reject it."""

    class Decision(models.TextChoices):
        PENDING = "pending", "Waiting for an administrator"
        APPROVED = "approved", "Approved"
        REJECTED = "rejected", "Rejected"

    organization = models.ForeignKey(
        "directory.Organization",
        on_delete=models.CASCADE,
        related_name="holds",
        help_text="The organization of this installation that holds it.",
    )
    kind = models.CharField(
        max_length=16,
        choices=MessageKind.choices,
        help_text="An export held by a master, or a reply held by a requestor.",
    )
    sender = models.CharField(max_length=1024)
    recipient = models.CharField(max_length=1024)
    peer = models.CharField(
        "from organization", max_length=64, help_text="The organization that sent the batch."
    )
    batch = models.UUIDField()
    message = models.ForeignKey(
        Message,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text="The part that tripped the guard.",
    )
    reason = models.TextField()
    deletes = models.PositiveIntegerField(help_text="Entries the batch would delete.")
    live = models.PositiveIntegerField(help_text="Entries it would delete them from.")
    sample = models.JSONField(
        default=list, blank=True, help_text="Some of the entries it would delete."
    )
    held_at = models.DateTimeField(auto_now_add=True)
    decision = models.CharField(
        max_length=16, choices=Decision.choices, default=Decision.PENDING, db_index=True
    )
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    decided_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-held_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "kind", "sender", "batch"], name="hold_once_per_batch"
            )
        ]

    def __str__(self) -> str:
        return f"{self.peer}: {self.deletes} deletes of {self.live} ({self.get_decision_display()})"

    @property
    def percent(self) -> float:
        return 100.0 * self.deletes / self.live if self.live else 100.0
