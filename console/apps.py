from django.apps import AppConfig


class ConsoleConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "console"
    verbose_name = "Console"

    def ready(self) -> None:
        from django.contrib.auth.signals import user_logged_in

        from console.timezones import remember_at_login

        user_logged_in.connect(remember_at_login, dispatch_uid="console.time_zone_at_login")
