"""URL wiring: the console at /, the JSON API under /api/, the Django admin at /admin/."""

from django.conf import settings
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.contrib.staticfiles.views import serve as serve_static
from django.templatetags.static import static
from django.urls import include, path, re_path
from django.views.generic import RedirectView

from console.metrics import metrics
from console.views.errors import forbidden, not_found
from console.views.health import healthz

admin.site.site_header = "InterOrg Sync"
admin.site.site_title = "InterOrg Sync"
admin.site.index_title = "Directories and synchronization"

FAVICON = "console/favicon.svg"

handler403 = forbidden
handler404 = not_found

urlpatterns = [
    path(
        "login/",
        auth_views.LoginView.as_view(template_name="console/login.html"),
        name="login",
    ),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("healthz", healthz, name="healthz"),
    # Browsers ask for it on every page that names no icon (the admin, the API docs).
    path("favicon.ico", RedirectView.as_view(url=static(FAVICON), permanent=True)),
    path("metrics", metrics, name="metrics"),
    path("api/", include("console.api.urls")),
    path("admin/", admin.site.urls),
    path("", include("console.urls")),
]

if settings.INTERORG_SERVE_STATIC and not settings.DEBUG:
    # runserver serves static files only with DEBUG; the console needs its CSS regardless.
    urlpatterns.insert(
        0,
        re_path(
            rf"^{settings.STATIC_URL.lstrip('/')}(?P<path>.*)$",
            serve_static,
            {"insecure": True},
        ),
    )
