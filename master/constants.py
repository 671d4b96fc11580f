"""Defaults of the master service."""

DEFAULT_MAX_ATTACHMENT_SIZE = 2 * 1024 * 1024
DEFAULT_TOMBSTONE_LIFETIME_DAYS = 60

# The mass-delete guard (transport.holds): an export deleting more than the limit, or more than
# the percentage of the requestor's live entries (counted from the floor on, so that removing
# one person of four is not held), is held for an administrator.
DEFAULT_DELETE_LIMIT = 500
DEFAULT_DELETE_PERCENT = 20
DEFAULT_DELETE_FLOOR = 10
# Refused messages in a row (bad signature, wrong sender) after which a requestor is quarantined.
DEFAULT_QUARANTINE_AFTER_REFUSALS = 10
