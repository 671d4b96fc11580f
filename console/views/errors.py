"""403 and 404 pages in the console's look (their messages are escaped like any text)."""

from django.shortcuts import render


def forbidden(request, exception=None):
    message = str(exception) if exception else ""
    return render(request, "console/error.html", {"code": 403, "message": message}, status=403)


def not_found(request, exception=None):
    return render(
        request, "console/error.html", {"code": 404, "message": "Page not found."}, status=404
    )
