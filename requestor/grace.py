"""The grace period of deletes: a contact whose entry was deleted (or left the Import Config,
or a full reply no longer listed it) is first hidden, out of the address book, and removed for
good only when its organization's grace period has passed (RequestorConfig.grace_days). If the
entry comes back meanwhile, the importer restores the same contact (requestor.importer)."""

from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from directory import backends, changes
from directory.models import Recipient
from requestor.models import ImportedChange, RequestorConfig

LOGGED = ("pk", "global_key", "origin_organization", "master_usn", "display_name", "primary_smtp")


def expired(config: RequestorConfig, now: datetime):
    """The organization's hidden contacts whose grace period has passed."""
    return Recipient.objects.filter(
        organization_id=config.organization_id,
        global_key__isnull=False,
        hidden_at__lte=now - timedelta(days=config.grace_days),
    )


def purge_expired(now: datetime | None = None) -> int:
    """Remove for good the hidden contacts past their organization's grace period (all of them
    where it is 0); return how many. An LDAP directory loses them at its next write."""
    now = now or timezone.now()
    purged = 0
    for config in RequestorConfig.objects.select_related("organization"):
        with transaction.atomic():
            gone = list(expired(config, now).values_list(*LOGGED))
            if not gone:
                continue
            changes.delete_recipients(Recipient.objects.filter(pk__in=[row[0] for row in gone]))
            ImportedChange.objects.bulk_create(
                ImportedChange(
                    organization_id=config.organization_id,
                    global_key=key,
                    origin=origin,
                    op=ImportedChange.Op.REMOVED,
                    master_usn=usn,
                    display_name=name[:256],
                    primary_smtp=smtp[:256],
                    detail=f"grace period of {config.grace_days} days over",
                    at=now,
                )
                for _pk, key, origin, usn, name, smtp in gone
            )
            backends.contacts_changed(config.organization)
        purged += len(gone)
    return purged
