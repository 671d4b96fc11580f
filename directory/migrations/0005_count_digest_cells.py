"""The digest cells of every organization's recipients as they stand (directory.changes keeps
them from now on)."""

from django.db import migrations

from transport.digest import Tally, to_hex


def count_cells(apps, schema_editor):
    Recipient = apps.get_model("directory", "Recipient")
    DigestCell = apps.get_model("directory", "DigestCell")
    cells: dict[tuple, Tally] = {}
    rows = Recipient.objects.order_by().values_list(
        "organization_id", "container_id", "kind", "trust_level", "global_key", "guid", "usn",
        "master_usn",
    )
    for org, container, kind, trust, key, guid, usn, master_usn in rows.iterator():
        tally = cells.setdefault((org, container, kind, trust, key is not None), Tally())
        if key is not None:
            tally.add(key, master_usn or 0)
        else:
            tally.add(str(guid), usn)
    DigestCell.objects.bulk_create(
        DigestCell(
            organization_id=org,
            container_id=container,
            kind=kind,
            trust_level=trust,
            imported=imported,
            digest=to_hex(tally.value),
            count=tally.count,
        )
        for (org, container, kind, trust, imported), tally in cells.items()
    )


class Migration(migrations.Migration):
    dependencies = [("directory", "0004_digest_cells")]

    operations = [migrations.RunPython(count_cells, migrations.RunPython.noop)]
