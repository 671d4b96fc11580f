"""Who handles which inbound document: filled by the master and requestor apps at start-up.

`transport` never imports `master` or `requestor`; they register here in `AppConfig.ready()`.
"""

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Agent:
    """An agent kind of this installation: the documents it takes and the addresses it owns."""

    document_type: str
    owns_address: Callable[[str], bool]
    handle: Callable


_agents: dict[str, Agent] = {}


def register_agent(document_type: str, owns_address: Callable[[str], bool], handle) -> None:
    _agents[document_type] = Agent(document_type, owns_address, handle)


def agent_for(document_type: str) -> Agent | None:
    return _agents.get(document_type)


def is_local_address(address: str) -> bool:
    """True if an agent of this installation receives mail at `address`."""
    return any(agent.owns_address(address) for agent in _agents.values())
