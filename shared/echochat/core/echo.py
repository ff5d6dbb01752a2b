"""The echo service's state: it echoes bytes unchanged, so all it decides is who may connect."""

from __future__ import annotations

from echochat.core.limits import Limits


class EchoCore:
    """Counts open echo connections against ``--max-clients``."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.connections = 0
        self.shutting_down = False

    def connect(self) -> bool:
        """A connection was accepted: may it be served? (If not, the adapter just closes it.)"""
        if self.shutting_down or self.connections >= self.limits.max_clients:
            return False
        self.connections += 1
        return True

    def connection_lost(self) -> None:
        """A connection the core admitted has ended: its place is free again."""
        self.connections -= 1

    def shutdown(self) -> None:
        """Admit nobody new; the adapter closes the open connections."""
        self.shutting_down = True
