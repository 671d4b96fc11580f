from django.apps import AppConfig


class MasterAppConfig(AppConfig):
    name = "master"
    verbose_name = "Master"

    def ready(self) -> None:
        from master import processing
        from transport import registry

        registry.register_agent("export", processing.is_master_address, processing.handle_export)
