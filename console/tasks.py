"""Celery entry points of the console: the alert check (console.alerts), run by beat."""

from celery import shared_task

from console import alerts


@shared_task(ignore_result=True)
def check_alerts() -> int:
    """Compare each organization's state with the one last alerted; mail the changes."""
    return len(alerts.check_alerts())
