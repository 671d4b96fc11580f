"""Upgrading from the version before verification.

- Conflicts recorded before now lack the master USN and the entry itself, which verification and
  the conflicts' own retry need: every requestor asks once for a full reply, which records them
  again whole and counts what it holds from scratch.
- Full exports used to stamp every object with one snapshot USN, so the master may hold an
  organization's entries at other USNs than its recipients' own: the next export restates
  everything in scope with fresh USNs (requestor.scope.UNKNOWN_SCOPE).
"""

from django.db import migrations
from django.utils import timezone

from transport.digest import Tally


def after_upgrade(apps, schema_editor):
    RequestorConfig = apps.get_model("requestor", "RequestorConfig")
    RequestorConfig.objects.filter(master_usn__gt=0).update(
        full_reply_pending=True, full_reply_requested_at=timezone.now()
    )
    RequestorConfig.objects.filter(requestor_usn__gt=0).update(exported_scope={"unknown": True})
    # The conflicts there are, as the set-aside digest counts them (their master USN is 0 until
    # the full reply records them again).
    Conflict = apps.get_model("requestor", "Conflict")
    for config in RequestorConfig.objects.all():
        tally = Tally()
        for key, usn in Conflict.objects.filter(config=config).values_list("global_key", "master_usn"):
            tally.add(key, usn)
        RequestorConfig.objects.filter(pk=config.pk).update(
            set_aside_digest=tally.hex, set_aside_count=tally.count
        )


class Migration(migrations.Migration):
    dependencies = [("requestor", "0007_verification")]

    operations = [migrations.RunPython(after_upgrade, migrations.RunPython.noop)]
