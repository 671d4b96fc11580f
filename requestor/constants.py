"""Choices and defaults of the requestor service."""

from django.db import models

DEFAULT_MAX_MESSAGE_SIZE = 2 * 1024 * 1024


class Trigger(models.TextChoices):
    SCHEDULE = "schedule", "Schedule"
    MANUAL = "manual", "Execute Now"
    COMMAND = "command", "Command line"
    API = "api", "API"


class RunAction(models.TextChoices):
    """The button a run answers, when it is more than Execute Now: the run history labels it."""

    CYCLE = "", "Cycle"
    IMPORT_ALL = "import_all", "Import All Recipients"
    EXPORT_ALL = "export_all", "Export All Recipients"


class RunStatus(models.TextChoices):
    # Execute Now (or Import All / Export All) recorded it; a worker has not started it yet.
    QUEUED = "queued", "Queued for a worker"
    RUNNING = "running", "Running"
    WAITING = "waiting", "Waiting for the master's reply"
    OK = "ok", "Completed"
    FAILED = "failed", "Failed"
    # Its reply never came, but a later run's export carried its changes and completed.
    SUPERSEDED = "superseded", "Superseded"
    # The master (or this organization's own import guard) holds the batch for an administrator.
    HELD = "held", "Held for an administrator"
    # A brief database error interrupted it before anything was applied: tried again soon.
    RETRYING = "retrying", "Retrying after a database error"


# A run still to finish: the console follows it, and a second Execute Now points to it.
PENDING_RUN_STATUSES = (RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.RETRYING)


# The import guard (transport.holds): a reply that would remove more contacts than this is held.
DEFAULT_IMPORT_DELETE_LIMIT = 500
DEFAULT_IMPORT_DELETE_PERCENT = 20
DEFAULT_IMPORT_DELETE_FLOOR = 10
# Days a contact whose entry was deleted stays hidden before it is removed for good.
DEFAULT_GRACE_DAYS = 7
MAX_GRACE_DAYS = 365


# The preview of a requestor's next cycle (requestor.preview).
class PreviewOp(models.TextChoices):
    """What an exported change does at the master."""

    ADD = "add", "Add"
    CHANGE = "change", "Change"
    DELETE = "delete", "Delete"


class PreviewReason(models.TextChoices):
    """Why the next export carries a change."""

    NEW = "new", "New (never exported)"
    CHANGED = "changed", "Changed"
    ENTERED_SCOPE = "entered_scope", "Entered the scope"
    LEFT_SCOPE = "left_scope", "Left the scope"
    DELETED = "deleted", "Deleted"
    TRANSFORMS = "transforms", "Transforms changed"
    FULL_EXPORT = "full_export", "Full export"


class ImportOp(models.TextChoices):
    """What a waiting reply does to a contact, or to an entry it cannot import."""

    ADD = "add", "Add"
    UPDATE = "update", "Update"
    REMOVE = "remove", "Remove"
    SET_ASIDE = "set_aside", "Set aside"
