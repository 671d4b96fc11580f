"""Choices of the message archive and the wire format's fixed names."""

from django.db import models

PROTOCOL_VERSION = 1
ATTACHMENT_NAME = "interorg.json.gz"
ATTACHMENT_TYPE = "application/gzip"


class Direction(models.TextChoices):
    INBOUND = "in", "Received"
    OUTBOUND = "out", "Sent"


class MessageKind(models.TextChoices):
    EXPORT = "export", "Export"
    REPLY = "reply", "Reply"
    BOUNCE = "bounce", "Delivery report"
    UNKNOWN = "unknown", "Unknown"


class Op(models.TextChoices):
    """What a change or an entry does to its object."""

    UPSERT = "upsert", "Add or change"
    DELETE = "delete", "Delete"


class Status(models.TextChoices):
    QUEUED = "queued", "Queued for sending"
    SENT = "sent", "Sent"
    RECEIVED = "received", "Received, waiting for processing"
    DEFERRED = "deferred", "Waiting for an earlier part"
    PROCESSED = "processed", "Processed"
    REJECTED = "rejected", "Rejected"
    # Archived but not applied: it waits for an administrator (transport.holds).
    HELD = "held", "Held for an administrator"
    FAILED = "failed", "Failed"


class AddressType(models.TextChoices):
    SMTP = "smtp", "SMTP"
    EX = "ex", "EX (inside this installation)"


def address_type_of(address: str) -> str:
    """EX addresses are X.500-style DNs (/o=ORG/...); everything else is SMTP."""
    return AddressType.EX if address.startswith("/") else AddressType.SMTP
