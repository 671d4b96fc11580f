"""Choices and defaults of the requestor service."""

from django.db import models

DEFAULT_MAX_MESSAGE_SIZE = 2 * 1024 * 1024


class Trigger(models.TextChoices):
    SCHEDULE = "schedule", "Schedule"
    MANUAL = "manual", "Execute Now"
    COMMAND = "command", "Command line"
    API = "api", "API"


class RunStatus(models.TextChoices):
    RUNNING = "running", "Running"
    WAITING = "waiting", "Waiting for the master's reply"
    OK = "ok", "Completed"
    FAILED = "failed", "Failed"
    # Its reply never came, but a later run's export carried its changes and completed.
    SUPERSEDED = "superseded", "Superseded"
