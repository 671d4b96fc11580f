"""403, 404 and 503 pages in the console's look (their messages are escaped like any text)."""

from django.shortcuts import render


def forbidden(request, exception=None):
    message = str(exception) if exception else ""
    return render(request, "console/error.html", {"code": 403, "message": message}, status=403)


def not_found(request, exception=None):
    return render(
        request, "console/error.html", {"code": 404, "message": "Page not found."}, status=404
    )


class UndecryptableSecretMiddleware:
    """A stored secret the configured keys cannot open (the keys were changed without
    `manage.py rotate_secrets`): a 503 that says so and what to do, on the console's pages and
    in the API, instead of a server error. Nothing of the secret is shown."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        from django.http import JsonResponse

        from interorg_site.encryption import UndecryptableSecret

        if not isinstance(exception, UndecryptableSecret):
            return None
        message = str(exception)
        if request.path.startswith("/api/"):
            return JsonResponse({"detail": message}, status=503)
        return render(request, "console/error.html", {"code": 503, "message": message}, status=503)
