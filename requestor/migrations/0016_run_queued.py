from django.db import migrations, models


class Migration(migrations.Migration):
    """Execute Now records its run at once, queued, before a worker starts it."""

    dependencies = [
        ("requestor", "0015_run_action_and_full_reply"),
    ]

    operations = [
        migrations.AlterField(
            model_name="run",
            name="status",
            field=models.CharField(
                choices=[
                    ("queued", "Queued for a worker"),
                    ("running", "Running"),
                    ("waiting", "Waiting for the master's reply"),
                    ("ok", "Completed"),
                    ("failed", "Failed"),
                    ("superseded", "Superseded"),
                    ("held", "Held for an administrator"),
                    ("retrying", "Retrying after a database error"),
                ],
                default="running",
                max_length=16,
            ),
        ),
    ]
