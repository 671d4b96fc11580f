"""Times in the administrator's own time zone.

Each request activates a zone (django.utils.timezone.activate), so that every template shows
times in it: the zone saved on the user's Time zone page (ConsoleProfile), else the browser's
zone, which static/console/console.js reads with Intl.DateTimeFormat and keeps in the
TZ_COOKIE cookie, else the server's TIME_ZONE. The API is left alone: it gives ISO 8601 times
with their offset. A zone that is not in zoneinfo (a forged cookie) is ignored.
"""

import zoneinfo
from functools import lru_cache
from urllib.parse import unquote

from django.conf import settings
from django.utils import timezone

TZ_COOKIE = "interorg_tz"
# The saved zone, read from ConsoleProfile once per session and kept in it ("" for none), so
# that a request costs no query for it (the session is loaded for the user anyway).
SESSION_KEY = "console_time_zone"
API_PREFIX = "/api/"


@lru_cache(maxsize=1)
def zone_names() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def is_zone(name: str) -> bool:
    return isinstance(name, str) and name in zone_names()


def zone_choices() -> list[tuple[str, str]]:
    return [(name, name) for name in sorted(zone_names())]


def _profile_zone(user) -> str:
    from console.models import ConsoleProfile

    profile = ConsoleProfile.objects.filter(user=user).values_list("time_zone", flat=True)
    return profile.first() or ""


def remember_at_login(sender, request, user, **kwargs) -> None:
    """At login (user_logged_in), the saved zone goes into the new session: the pages of the
    session then cost no query for it, the first one included."""
    if request is not None and hasattr(request, "session"):
        request.session[SESSION_KEY] = _profile_zone(user)


def saved_zone(request) -> str:
    user = getattr(request, "user", None)
    if not getattr(user, "is_authenticated", False) or not hasattr(request, "session"):
        return ""
    zone = request.session.get(SESSION_KEY)
    if zone is None:  # a session opened before this setting existed
        zone = request.session[SESSION_KEY] = _profile_zone(user)
    return zone if zone and is_zone(zone) else ""


def remember(request, zone: str) -> None:
    """The zone just saved on the Time zone page, for the rest of the session."""
    request.session[SESSION_KEY] = zone


def zone_for(request) -> tuple[str, str]:
    """(zone name, where it comes from: "saved", "browser" or "server")."""
    zone = saved_zone(request)
    if zone:
        return zone, "saved"
    browser = unquote(request.COOKIES.get(TZ_COOKIE, ""))
    if is_zone(browser):
        return browser, "browser"
    return settings.TIME_ZONE, "server"


class TimeZoneMiddleware:
    """Activates the user's zone for the request (after AuthenticationMiddleware)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path_info.startswith(API_PREFIX):
            # The API's times stay as they are for every caller (ISO 8601 in the server's zone).
            return self.get_response(request)
        name, source = zone_for(request)
        request.time_zone, request.time_zone_source = name, source
        timezone.activate(zoneinfo.ZoneInfo(name))
        try:
            return self.get_response(request)
        finally:
            timezone.deactivate()
