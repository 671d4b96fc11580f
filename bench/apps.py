from django.apps import AppConfig


class BenchConfig(AppConfig):
    """Benchmarks of the sync path (`manage.py bench`); builds its data in a scratch database."""

    name = "bench"
    verbose_name = "Benchmarks"
