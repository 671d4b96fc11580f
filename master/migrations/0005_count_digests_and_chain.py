"""The master's digests of its live entries, and the fingerprint chain of its ledger, as they
stand (master.processing keeps them from now on)."""

import hashlib

from django.db import migrations

from transport.digest import Tally


def chain_onto(previous: str, usn: int, key: str, op: str, source_usn) -> str:
    # The definition of master.processing.chain_onto, kept here as it was when this ran.
    data = f"{previous}\x1f{usn}\x1f{key}\x1f{op}\x1f{source_usn}".encode()
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def count(apps, schema_editor):
    MasterConfig = apps.get_model("master", "MasterConfig")
    AllowedRequestor = apps.get_model("master", "AllowedRequestor")
    GlobalEntry = apps.get_model("master", "GlobalEntry")
    LedgerEntry = apps.get_model("master", "LedgerEntry")
    for master in MasterConfig.objects.all():
        everyone = Tally()
        for requestor in AllowedRequestor.objects.filter(master=master):
            mine, exported = Tally(), Tally()
            live = GlobalEntry.objects.filter(requestor=requestor, deleted=False, usn__gt=0)
            for key, usn, object_id, source_usn in live.values_list(
                "global_key", "usn", "object_id", "source_usn"
            ).iterator():
                mine.add(key, usn)
                exported.add(str(object_id), source_usn)
            everyone.merge(Tally(mine.value, mine.count))
            AllowedRequestor.objects.filter(pk=requestor.pk).update(
                reply_digest=mine.hex,
                reply_count=mine.count,
                export_digest=exported.hex,
                export_count=exported.count,
            )
        history = "0" * 32
        rows = LedgerEntry.objects.filter(master=master).order_by("usn")
        for pk, usn, key, op, source_usn in rows.values_list(
            "pk", "usn", "global_key", "op", "source_usn"
        ).iterator():
            history = chain_onto(history, usn, key, op, source_usn)
            LedgerEntry.objects.filter(pk=pk).update(chain=history)
        MasterConfig.objects.filter(pk=master.pk).update(
            reply_digest=everyone.hex, reply_count=everyone.count, history=history
        )


class Migration(migrations.Migration):
    dependencies = [("master", "0004_digests_and_history")]

    operations = [migrations.RunPython(count, migrations.RunPython.noop)]
