"""Login throttling with django-axes (settings: AXES_*, INTERORG_LOGIN_*): the client's address
as the lockout counts it, and the lockouts in force, for the console's staff."""

from dataclasses import dataclass

from django.conf import settings
from django.db.models import Sum
from django.http import HttpRequest
from django.utils import timezone


def client_address(request: HttpRequest) -> str | None:
    """The address a failed login is counted against. Directly reachable (the default), the
    connection's; behind INTERORG_LOGIN_PROXY_COUNT reverse proxies, the entry of
    X-Forwarded-For the outermost of them appended (the ones to its left the client may have
    written itself), so that everyone behind the proxy is not locked out together."""
    proxies = settings.INTERORG_LOGIN_PROXY_COUNT
    remote = request.META.get("REMOTE_ADDR")
    if not proxies:
        return remote
    forwarded = [
        hop.strip() for hop in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if hop
    ]
    if len(forwarded) < proxies:
        return remote
    return forwarded[-proxies] or remote


# The width of django-axes's username columns.
USERNAME_COLUMN = 255


def client_username(request: HttpRequest, credentials: dict | None = None) -> str | None:
    """The user name a failed login is counted against, as typed, cut to the column that
    records it: the login form takes any length (it checks none before authenticating), and a
    longer name would fail the record's insert on PostgreSQL with a server error."""
    if credentials:
        username = credentials.get("username")
    else:
        username = getattr(request, "data", request.POST).get("username")
    return username[:USERNAME_COLUMN] if isinstance(username, str) else username


@dataclass(frozen=True)
class Lockouts:
    users: int
    addresses: int

    def __bool__(self) -> bool:
        return bool(self.users or self.addresses)


def lockouts_now() -> Lockouts:
    """How many users and addresses are locked out at this moment: failures within the cooloff
    adding up to the limit (as django-axes counts them)."""
    from axes.models import AccessAttempt

    if not settings.AXES_ENABLED:
        return Lockouts(0, 0)
    recent = AccessAttempt.objects.filter(
        attempt_time__gte=timezone.now() - settings.AXES_COOLOFF_TIME
    )
    limit = settings.AXES_FAILURE_LIMIT

    def locked(field: str) -> int:
        return (
            recent.exclude(**{f"{field}__isnull": True})
            .values(field)
            .annotate(failures=Sum("failures_since_start"))
            .filter(failures__gte=limit)
            .count()
        )

    return Lockouts(users=locked("username"), addresses=locked("ip_address"))


def lockout_response(request: HttpRequest, original_response=None, credentials=None):
    """The page a locked-out login gets (429): why, for how long, and who can unlock."""
    from django.shortcuts import render

    minutes = int(settings.AXES_COOLOFF_TIME.total_seconds() // 60)
    context = {"failure_limit": settings.AXES_FAILURE_LIMIT, "minutes": minutes}
    return render(request, "console/locked_out.html", context, status=429)
