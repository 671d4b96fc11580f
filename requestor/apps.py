from django.apps import AppConfig


class RequestorAppConfig(AppConfig):
    name = "requestor"
    verbose_name = "Requestor"

    def ready(self) -> None:
        from requestor import importer, trust
        from transport.registry import Agent, register_agent

        register_agent(
            Agent("reply", trust.organization_at, trust.trusted_keys, importer.handle_reply)
        )
