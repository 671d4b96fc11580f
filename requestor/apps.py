from django.apps import AppConfig


class RequestorAppConfig(AppConfig):
    name = "requestor"
    verbose_name = "Requestor"

    def ready(self) -> None:
        from requestor import importer
        from transport import registry

        registry.register_agent("reply", importer.is_requestor_address, importer.handle_reply)
