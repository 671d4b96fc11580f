"""The user's own settings: the time zone the console shows times in."""

from django import forms
from django.conf import settings
from django.contrib import messages
from django.shortcuts import redirect, render

from console import timezones
from console.models import ConsoleProfile


class TimeZoneForm(forms.Form):
    time_zone = forms.ChoiceField(
        required=False,
        label="Time zone",
        help_text="Times on every console page are shown in this zone.",
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        browser = [("", "The browser's zone (detected)")]
        self.fields["time_zone"].choices = browser + timezones.zone_choices()
        self.fields["time_zone"].error_messages["invalid_choice"] = (
            "%(value)s is not a known time zone: choose one of the list (IANA names such as "
            "Europe/Paris)."
        )


def time_zone(request):
    profile = ConsoleProfile.objects.filter(user=request.user).first()
    status = 200
    if request.method == "POST":
        form = TimeZoneForm(request.POST)
        if form.is_valid():
            zone = form.cleaned_data["time_zone"]
            ConsoleProfile.objects.update_or_create(user=request.user, defaults={"time_zone": zone})
            timezones.remember(request, zone)
            messages.success(
                request,
                f"Times are now shown in {zone}." if zone else "Times follow the browser's zone.",
            )
            return redirect("console:time-zone")
        status = 400
    else:
        form = TimeZoneForm(initial={"time_zone": profile.time_zone if profile else ""})
    context = {
        "form": form,
        "browser_zone": request.COOKIES.get(timezones.TZ_COOKIE, ""),
        "server_zone": settings.TIME_ZONE,
    }
    return render(request, "console/time_zone.html", context, status=status)
