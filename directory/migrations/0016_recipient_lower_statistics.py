"""Statistics on lower(primary_smtp) and lower(alias) for PostgreSQL's planner.

The unique indexes on those expressions are partial (recipients shown in the address book), and
the planner takes no statistics from a partial index: without these, it guesses that each address
an import asks for matches 0.5% of the organization's recipients, and at a few hundred thousand
recipients it reads them all where it should probe the index once per address.
"""

from django.db import migrations

STATISTICS = {
    "recipient_lower_smtp_stats": "lower(primary_smtp)",
    "recipient_lower_alias_stats": "lower(alias)",
}


def create(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name, expression in STATISTICS.items():
        schema_editor.execute(
            f"CREATE STATISTICS IF NOT EXISTS {name} ON ({expression}) FROM directory_recipient"
        )


def drop(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name in STATISTICS:
        schema_editor.execute(f"DROP STATISTICS IF EXISTS {name}")


class Migration(migrations.Migration):
    dependencies = [("directory", "0015_drop_redundant_indexes")]

    operations = [migrations.RunPython(create, drop, elidable=False)]
