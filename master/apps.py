from django.apps import AppConfig


class MasterAppConfig(AppConfig):
    name = "master"
    verbose_name = "Master"

    def ready(self) -> None:
        from master import peers, processing, quarantine, trust
        from transport.constants import MessageKind
        from transport.peers import register_master_view
        from transport.registry import Agent, register_agent

        register_agent(
            Agent(
                MessageKind.EXPORT,
                trust.organization_at,
                trust.trusted_keys,
                processing.handle_export,
                holding=quarantine.holding,
                held=quarantine.held,
                decided=quarantine.decided,
                refused=quarantine.refused,
                # A requestor's exports are applied in order (a quarantine holds the ones after
                # a held one), and every export takes the master's row lock (its USN counter).
                # The turn is per requestor: a worker sweeping the inbox passes over a
                # requestor's next export while another worker applies its previous one, and
                # checks and decodes another requestor's export while it waits for the lock.
                in_order=True,
                turn_per_sender=True,
            )
        )
        register_master_view(peers.master_view)
