"""The Celery application: settings from Django's (CELERY_*), tasks from each app's tasks.py."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "interorg_site.settings")

app = Celery("interorg_site")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
