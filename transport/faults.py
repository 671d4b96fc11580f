"""Brief database faults, and how long to wait before trying again.

A connection killed (a database restart, a failover, pg_terminate_backend), a serialization
failure or a deadlock says nothing about the work itself: the same work succeeds a moment later.
Every step that meets one rolls back whole, so trying it again is safe. The requestor's cycles
(requestor.cycle) and the Celery tasks retry these errors at this pace, the one transport.inbox
keeps for received messages.
"""

from django.db import InterfaceError, OperationalError

# Django wraps the driver's errors (psycopg's SerializationFailure and DeadlockDetected are
# OperationalErrors, as is SQLite's "database is locked"); the driver's own classes are here for
# code that talks to the connection underneath.
try:
    import psycopg

    _DRIVER_ERRORS: tuple[type[Exception], ...] = (psycopg.OperationalError, psycopg.InterfaceError)
except ImportError:  # pragma: no cover (psycopg is a dependency; SQLite-only installs lack it)
    _DRIVER_ERRORS = ()

TRANSIENT_DB_ERRORS: tuple[type[Exception], ...] = (
    OperationalError,
    InterfaceError,
    *_DRIVER_ERRORS,
)

# Attempt n waits RETRY_FIRST_SECONDS · 2^(n-1), at most RETRY_MAX_SECONDS; after MAX_ATTEMPTS
# the work is recorded as failed (and kept).
RETRY_FIRST_SECONDS = 5
RETRY_MAX_SECONDS = 300
MAX_ATTEMPTS = 10


def pause(attempt: int) -> int:
    """Seconds to wait after the `attempt`-th attempt met a brief database error."""
    return min(RETRY_FIRST_SECONDS * 2 ** (max(attempt, 1) - 1), RETRY_MAX_SECONDS)


def describe(exc: Exception) -> str:
    """The error on one line, short enough for a run's or a message's record."""
    return f"{exc.__class__.__name__}: {' '.join(str(exc).split())[:300]}"


# Celery options of the tasks whose whole work is safe to run again (housekeeping, sweeps):
# a brief database error retries the task after the same growing pauses.
RETRY_ON_DATABASE_ERRORS = {
    "autoretry_for": TRANSIENT_DB_ERRORS,
    "retry_backoff": RETRY_FIRST_SECONDS,
    "retry_backoff_max": RETRY_MAX_SECONDS,
    "retry_jitter": True,
    "max_retries": MAX_ATTEMPTS - 1,
}
