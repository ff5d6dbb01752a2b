"""Idle clients: what 1000 registered chat clients that say nothing cost a server.

The clients connect and register (NICK, USER, then a PING whose PONG ends
the welcome) with a bounded number in flight, like a crowd reconnecting
after a restart; then they sit in no channel, so no broadcast adds to the
cost. The server's RSS is read before the first connection and once all
are registered, and the difference is divided by the clients.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from echochat.bench.chat import SETUP_IN_FLIGHT, open_clients
from echochat.experiments.common import MiB
from echochat.launch import ServerUnderTest

DEFAULT_CLIENTS = 1000


@dataclass(slots=True)
class IdleResult:
    """One idle run; memory in MiB, except the per-client cost in KiB."""

    server: str
    clients: int
    in_flight: int  # connecting or registering at once, at most
    connect_s: float  # connect and register every client
    clients_per_s: float
    rss_before_mib: float  # warmed up, no clients
    rss_after_mib: float  # every client registered
    per_client_kib: float


def run_idle(
    server: ServerUnderTest, clients: int = DEFAULT_CLIENTS, *, in_flight: int = SETUP_IN_FLIGHT
) -> IdleResult:
    """Connect and register ``clients`` idle clients, measure, then disconnect them.

    Warms the server first (one connect/close, the same for every server),
    so the baseline already includes what the first connection allocates.
    """
    server.warm_up()
    before = server.rss()
    start = time.monotonic()
    socks = open_clients([server.port], clients, in_flight=in_flight)
    try:
        elapsed = time.monotonic() - start
        # Every client has its PONG, so the server has done all their work.
        after = server.rss()
    finally:
        for sock in socks:
            sock.close()
    return IdleResult(
        server=server.label,
        clients=clients,
        in_flight=in_flight,
        connect_s=round(elapsed, 6),
        clients_per_s=round(clients / elapsed, 1),
        rss_before_mib=round(before / MiB, 2),
        rss_after_mib=round(after / MiB, 2),
        per_client_kib=round((after - before) / clients / 1024, 2),
    )
