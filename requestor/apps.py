from django.apps import AppConfig


class RequestorAppConfig(AppConfig):
    name = "requestor"
    verbose_name = "Requestor"

    def ready(self) -> None:
        from requestor import failures, holding, importer, trust
        from transport.constants import MessageKind
        from transport.registry import Agent, on_delivery_failure, register_agent

        register_agent(
            Agent(
                MessageKind.REPLY,
                trust.organization_at,
                trust.trusted_keys,
                importer.handle_reply,
                held=holding.held,
                decided=holding.decided,
                in_order=True,
            )
        )
        on_delivery_failure(MessageKind.EXPORT, failures.export_failed)
