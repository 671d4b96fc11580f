"""Check every organization's state for alerts now (what beat does every minute), and show
what was recorded and mailed."""

from django.core.management.base import BaseCommand
from django.utils import timezone

from console import alerts
from console.models import AlertSettings


class Command(BaseCommand):
    help = (
        "Compare each organization's state with the one its alert recipients were last told "
        "of; record and mail each change that lasted the hold-down "
        "(INTERORG_ALERT_HOLD_DOWN_MINUTES) and each repair, and send mails still due. Then "
        "list every organization's alerted state."
    )

    def handle(self, *args, **options):
        events = alerts.check_alerts()
        for event in events:
            if event.sent_at:
                outcome = f"mailed to {', '.join(event.recipients)}"
            else:
                outcome = f"not mailed: {event.error}"
            self.stdout.write(f"{event.organization.name}: {event.subject} ({outcome})")
        if not events:
            self.stdout.write("No state changed.")
        for row in AlertSettings.objects.select_related("organization").order_by(
            "organization__name"
        ):
            line = f"  {row.organization.name}: {row.state}"
            if row.state_since:
                line += f" since {timezone.localtime(row.state_since):%Y-%m-%d %H:%M}"
            if row.pending_state:
                line += f", {row.pending_state} waiting out the hold-down"
            self.stdout.write(line)
