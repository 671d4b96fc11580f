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
    # The master (or this organization's own import guard) holds the batch for an administrator.
    HELD = "held", "Held for an administrator"


# The import guard (transport.holds): a reply that would remove more contacts than this is held.
DEFAULT_IMPORT_DELETE_LIMIT = 500
DEFAULT_IMPORT_DELETE_PERCENT = 20
DEFAULT_IMPORT_DELETE_FLOOR = 10
