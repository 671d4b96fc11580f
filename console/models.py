"""Who may see or administer which organization in the console and the API, and who hears
of an organization's state changes by e-mail (console.alerts)."""

import re

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import models
from django.utils import timezone

from console.constants import ConsoleRole
from console.status import State


class OrganizationRole(models.Model):
    """A user's role (operator or administrator) in one organization."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="organization_roles"
    )
    organization = models.ForeignKey(
        "directory.Organization", on_delete=models.CASCADE, related_name="console_roles"
    )
    role = models.CharField(max_length=16, choices=ConsoleRole.choices)

    class Meta:
        ordering = ["organization__name", "user__username"]
        constraints = [
            models.UniqueConstraint(
                fields=["user", "organization"],
                name="one_role_per_user_and_organization",
                violation_error_message="This user already has a role in this organization.",
            )
        ]

    def __str__(self) -> str:
        return f"{self.user} {self.role} of {self.organization}"


# At most this many addresses beside the administrators: an alert is a mail to people who act.
MAX_ALERT_ADDRESSES = 50
MAX_ADDRESS_LENGTH = 254


def parse_addresses(text: str) -> list[str]:
    """Addresses from text separated by new lines, commas or semicolons."""
    return [part.strip() for part in re.split(r"[\r\n,;]+", text) if part.strip()]


def clean_addresses(addresses) -> list[str]:
    """Valid e-mail addresses without duplicates (ignoring case), in the order given; a
    ValidationError names the ones that are not."""
    if not isinstance(addresses, list | tuple) or not all(isinstance(a, str) for a in addresses):
        raise ValidationError("Give a list of e-mail addresses.")
    unique = {}
    bad = []
    for address in (a.strip() for a in addresses):
        if _is_address(address):
            unique.setdefault(address.lower(), address)
        else:
            bad.append(address.replace("\x00", "\\0")[:80])
    if bad:
        raise ValidationError(f"Not an e-mail address: {', '.join(bad[:5])}.")
    if len(unique) > MAX_ALERT_ADDRESSES:
        raise ValidationError(f"At most {MAX_ALERT_ADDRESSES} addresses; use a mailing list.")
    return list(unique.values())


def _is_address(address: str) -> bool:
    if len(address) > MAX_ADDRESS_LENGTH or "\x00" in address:
        return False
    try:
        validate_email(address)
    except ValidationError:
        return False
    return True


def validate_addresses(addresses) -> None:
    clean_addresses(addresses)


class AlertSettings(models.Model):
    """Who gets an organization's alert e-mails, and the state they were last told of."""

    organization = models.OneToOneField(
        "directory.Organization", on_delete=models.CASCADE, related_name="alert_settings"
    )
    addresses = models.JSONField(
        "also notify",
        default=list,
        blank=True,
        validators=[validate_addresses],
        help_text="E-mail addresses that get this organization's alerts.",
    )
    include_administrators = models.BooleanField(
        "notify its administrators",
        default=True,
        help_text="Everyone who may administer this organization and has an e-mail address.",
    )
    # Written by console.alerts with conditional updates; an edit of the recipients leaves
    # them alone (console.alerts.set_recipients writes its two fields only).
    state = models.CharField(max_length=32, default=State.OK, editable=False)
    reason = models.TextField(blank=True, editable=False)
    state_since = models.DateTimeField(null=True, blank=True, editable=False)
    pending_state = models.CharField(
        max_length=32,
        blank=True,
        editable=False,
        help_text="A new state waiting out the hold-down before it is alerted.",
    )
    pending_since = models.DateTimeField(null=True, blank=True, editable=False)
    repairs_seen_until = models.DateTimeField(
        null=True,
        blank=True,
        editable=False,
        help_text="Repairs carried out up to this time have been alerted.",
    )

    class Meta:
        verbose_name = "alert settings"
        verbose_name_plural = "alert settings"

    def __str__(self) -> str:
        return f"Alerts of {self.organization}"


class AlertEvent(models.Model):
    """A change of an organization's state, or a repair, and the e-mail that tells of it."""

    organization = models.ForeignKey(
        "directory.Organization", on_delete=models.CASCADE, related_name="alert_events"
    )
    at = models.DateTimeField(default=timezone.now)
    previous_state = models.CharField(max_length=32)
    state = models.CharField(max_length=32, help_text="The new state, or repaired.")
    subject = models.CharField(max_length=200)
    reason = models.TextField(blank=True)
    recipients = models.JSONField(default=list, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    sent_at = models.DateTimeField(null=True, blank=True)
    retry_at = models.DateTimeField(
        null=True,
        blank=True,
        db_index=True,
        help_text="When the mail is (tried again) to be sent; empty once sent or given up.",
    )
    error = models.TextField(blank=True, help_text="Why the mail has not gone out.")

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["organization", "-at"], name="alert_event_org_at")]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M} {self.subject}"


class ConsoleProfile(models.Model):
    """A console user's own settings: the time zone the pages show times in."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="console_profile"
    )
    time_zone = models.CharField(
        max_length=64,
        blank=True,
        help_text="An IANA zone such as Europe/Paris; empty: the browser's zone.",
    )

    def __str__(self) -> str:
        return f"{self.user}: {self.time_zone or 'browser zone'}"
