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
                # Every export takes the master's row lock (its USN counter): they are applied
                # one at a time anyway, and taking that turn first lets a worker sweeping the
                # inbox go on to other work rather than wait for the lock.
                in_order=True,
            )
        )
        register_master_view(peers.master_view)
