"""URL wiring: the admin console for now; the property pages and API mount here too."""

from django.contrib import admin
from django.urls import path
from django.views.generic import RedirectView

admin.site.site_header = "InterOrg Sync"
admin.site.site_title = "InterOrg Sync"
admin.site.index_title = "Directories and synchronization"

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="admin:index", permanent=False)),
    path("admin/", admin.site.urls),
]
