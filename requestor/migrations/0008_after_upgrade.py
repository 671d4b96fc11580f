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


def after_upgrade(apps, schema_editor):
    RequestorConfig = apps.get_model("requestor", "RequestorConfig")
    RequestorConfig.objects.filter(master_usn__gt=0).update(
        full_reply_pending=True, full_reply_requested_at=timezone.now()
    )
    RequestorConfig.objects.filter(requestor_usn__gt=0).update(exported_scope={"unknown": True})


class Migration(migrations.Migration):
    dependencies = [("requestor", "0007_verification")]

    operations = [migrations.RunPython(after_upgrade, migrations.RunPython.noop)]
