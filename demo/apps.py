from django.apps import AppConfig


class DemoConfig(AppConfig):
    """The demo organizations; the only app that may configure master and requestor together."""

    name = "demo"
    verbose_name = "Demo"
