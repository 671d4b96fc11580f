"""Input no field can take is refused at the door, with 400 and a message, not a server error.

A NUL character is valid in a URL, a form field or a JSON string, but PostgreSQL refuses it in
any text (the query fails: a 500), and no name, address or setting here may contain one. JSON
nested thousands of levels deep makes Python's decoder give up with RecursionError (a 500 too),
and nothing the API takes is nested more than a few levels. The middleware checks everything a
request carries that Django decodes itself (path, query string, cookies, headers, POSTed form
fields and file names) before any view, session or database sees it; the API's parsers
(console/api/parsers.py) check the bodies DRF decodes (JSON, and forms sent with PUT or PATCH).
"""

import logging
from collections.abc import Iterable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

log = logging.getLogger("interorg_site.security")

NUL = "\x00"
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


class HostileInput(ValueError):
    """A request that carries what no field accepts; its message says what and where."""


def nul_message(where: str) -> str:
    return f"Refused: a NUL character (\\x00) in {where}. No field accepts one."


def depth_message(limit: int) -> str:
    return f"Refused: JSON nested more than {limit} levels deep."


def check_strings(strings: Iterable[str], where: str) -> None:
    for value in strings:
        if isinstance(value, str) and NUL in value:
            raise HostileInput(nul_message(where))


def check_query_dict(data, where: str) -> None:
    """A QueryDict's names and every one of their values."""
    for name, values in data.lists():
        check_strings([name, *values], where)


def check_json(data, limit: int) -> None:
    """Every key and string of decoded JSON, and its depth, walked without recursion (a
    structure just under the decoder's own limit must not exhaust the stack here either)."""
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict | list) and depth > limit:
            raise HostileInput(depth_message(limit))
        if isinstance(value, dict):
            check_strings(value.keys(), "a JSON key")
            stack.extend((item, depth + 1) for item in value.values())
        elif isinstance(value, list):
            stack.extend((item, depth + 1) for item in value)
        elif isinstance(value, str) and NUL in value:
            raise HostileInput(nul_message("a JSON value"))


def check_request(request: HttpRequest) -> None:
    check_strings([request.path], "the address")
    check_query_dict(request.GET, "the query string")
    check_strings([*request.COOKIES.keys(), *request.COOKIES.values()], "a cookie")
    check_strings(
        [value for name, value in request.META.items() if name.startswith("HTTP_")], "a header"
    )
    if request.method == "POST" and request.content_type in FORM_TYPES:
        # Django parses form bodies of POST only; DRF's parsers check the other methods'.
        check_query_dict(request.POST, "a form field")
        for name, files in request.FILES.lists():
            check_strings([name, *(upload.name for upload in files)], "an uploaded file's name")


def is_api(request: HttpRequest) -> bool:
    return request.path_info.startswith("/api/")


def refusal(request: HttpRequest, message: str) -> HttpResponse:
    log.warning("%s %s from %s", message, request.method, request.META.get("REMOTE_ADDR"))
    if is_api(request):
        return JsonResponse({"detail": message}, status=400)
    return render(request, "console/error.html", {"code": 400, "message": message}, status=400)


class HostileInputMiddleware:
    """Answers 400 (JSON under /api/, the console's error page elsewhere) to a request carrying
    a NUL character anywhere Django decodes it. First in the chain after SecurityMiddleware, so
    that not even the session look-up runs with such a cookie."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        try:
            check_request(request)
        except HostileInput as refused:
            return refusal(request, str(refused))
        return self.get_response(request)


def max_json_depth() -> int:
    return settings.INTERORG_MAX_JSON_DEPTH
