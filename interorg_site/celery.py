"""The Celery application: settings from Django's (CELERY_*), tasks from each app's tasks.py."""

import os

from celery import Celery
from celery.signals import beat_init

from interorg_site import broker

broker.install()
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "interorg_site.settings")

app = Celery("interorg_site")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# Names of the periodic entries defined in settings.CELERY_BEAT_SCHEDULE.
HOUSEKEEPING_PREFIX = "interorg: "


@beat_init.connect
def forget_removed_housekeeping(sender=None, **kwargs) -> int:
    """The database scheduler copies CELERY_BEAT_SCHEDULE into its tables but never removes an
    entry: drop ours that the settings no longer define (INTERORG_HOUSEKEEPING_CRON=disable)."""
    from django_celery_beat.models import PeriodicTask

    stale = PeriodicTask.objects.filter(name__startswith=HOUSEKEEPING_PREFIX).exclude(
        name__in=list(app.conf.beat_schedule)
    )
    return stale.delete()[0]
