"""Which agent of this installation receives mail at an address: filled by the master and
requestor apps at start-up.

`transport` never imports `master` or `requestor`; they register here in `AppConfig.ready()`.
"""

from collections.abc import Callable
from dataclasses import dataclass

from django.db.models import Q


@dataclass(frozen=True)
class Agent:
    """A kind of agent: the documents it takes, the addresses it owns, whom it trusts."""

    document_type: str
    # The organization whose agent of this kind receives at an address, or None.
    organization_at: Callable[[str], int | None]
    # (recipient, sender) → the public keys configured for that sender, [] when the sender is
    # allowed but no key is configured, None when the sender may not send to that recipient.
    trusted_keys: Callable[[str, str], list[str] | None]
    handle: Callable
    # (organization id, sender) → why its messages are held now (a quarantine), or None.
    holding: Callable[[int, str], str | None] | None = None
    # Told after a message was held (message, document, MessageHeld, Hold or None), after an
    # administrator decided a hold (hold), and after a message was refused (message).
    held: Callable | None = None
    decided: Callable | None = None
    refused: Callable | None = None
    # Its messages wait for one another (a part deferred until an earlier one is applied, or
    # one lock all of them take): the inbox processes those of one organization one at a time
    # (transport.inbox.in_order), and a worker sweeping the inbox passes over an organization
    # whose turn another one holds.
    in_order: bool = False
    # The turn is the organization's per sender: what one sender's messages wait for is
    # earlier messages of the same sender only (the master's exports, each requestor's own).
    turn_per_sender: bool = False


_agents: dict[str, Agent] = {}


def at_address(address: str) -> Q:
    """The agent configuration (a master's or a requestor's) receiving at `address`: its SMTP
    address or, inside this installation, its DN, whatever their case."""
    if not address:
        return Q(pk__in=[])  # a requestor reached over SMTP only has an empty DN: not this
    return Q(address__iexact=address) | Q(dn__iexact=address)


def register_agent(agent: Agent) -> None:
    _agents[agent.document_type] = agent


def agent_at(address: str) -> Agent | None:
    """The agent of this installation that receives mail at `address`."""
    return next((a for a in _agents.values() if a.organization_at(address) is not None), None)


def organization_at(address: str) -> int | None:
    """The organization of this installation whose agent receives mail at `address`."""
    for agent in _agents.values():
        organization_id = agent.organization_at(address)
        if organization_id is not None:
            return organization_id
    return None


def is_local_address(address: str) -> bool:
    return organization_at(address) is not None


def not_allowed(sender: str, recipient: str) -> str:
    return (
        f"{sender} may not send to {recipient}: it is not on the list of senders this agent "
        "accepts."
    )


def sender_refusal(sender: str, recipient: str) -> str | None:
    """Why mail from `sender` to `recipient` is refused before anything else is looked at, or
    None when an agent here receives at `recipient` and takes mail from `sender`."""
    agent = agent_at(recipient)
    if agent is None:
        return f"No agent of this installation receives mail at {recipient}."
    if agent.trusted_keys(recipient, sender) is None:
        return not_allowed(sender, recipient)
    return None


# What to tell an agent when a message it sent can never arrive (refused by the relay with a
# 5xx, bounced, or refused by the receiving agent), by the kind of the message.
_failure_listeners: dict[str, Callable] = {}


def on_delivery_failure(kind: str, listener: Callable) -> None:
    _failure_listeners[kind] = listener


def delivery_failed(message) -> None:
    """An outbound message failed for good (its `error` says why): tell the agent that sent it."""
    listener = _failure_listeners.get(message.kind)
    if listener is not None:
        listener(message)
