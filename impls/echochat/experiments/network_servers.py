"""Chat servers of one network (``--redis``), started for a benchmark or an experiment.

A server counts as joined once its BURST, the event that introduces its users,
comes back on the bus: from then on every server that reads the bus knows
its users before any later event. That is read on a subscriber of our own,
closed before anything is measured, rather than polled for in the log.
"""

from __future__ import annotations

import time

from echochat.core.federation import Event
from echochat.core.redislink import BUS_CHANNEL
from echochat.launch import ServerUnderTest
from echochat.launch_redis import RedisServer
from echochat.registry import parse_configuration

# A joining server waits 1 s for a snapshot before it takes the network to be
# empty (federation.SYNC_WAIT); starting the interpreter takes a second or two more.
JOIN_TIMEOUT = 20.0


def start_server(configuration_id: str, *options: str) -> ServerUnderTest:
    """``echochat serve --service chat`` of ``configuration_id`` (``trio``, ``asyncio+uvloop``)."""
    implementation, loop = parse_configuration(configuration_id)
    return ServerUnderTest.echochat(implementation.name, "chat", *options, loop=loop)


def join(redis: RedisServer, configuration_id: str, name: str, *options: str) -> ServerUnderTest:
    """A chat server named ``name`` on ``redis``'s network, returned once it has joined."""
    with redis.client(timeout=JOIN_TIMEOUT) as bus:
        bus.send("SUBSCRIBE", BUS_CHANNEL)
        if (reply := bus.read())[0] != b"subscribe":
            raise RuntimeError(f"Redis did not confirm SUBSCRIBE: {reply!r}")
        server = start_server(
            configuration_id, "--redis", redis.url, "--server-name", name, *options
        )
        deadline = time.monotonic() + JOIN_TIMEOUT
        try:
            while time.monotonic() < deadline:
                event = Event.parse(bus.read()[2])
                if event.kind == b"BURST" and event.sender[0] == name:
                    return server
        except TimeoutError:
            pass  # Nothing on the bus for JOIN_TIMEOUT: said below.
        except BaseException:
            server.kill()
            raise
        log = server.stderr()
        server.kill()
        raise RuntimeError(
            f"{server.label} did not join the network within {JOIN_TIMEOUT:g} s; its log:\n"
            f"{log[-2000:]}"
        )
