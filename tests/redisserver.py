"""A private Redis for each test, and a subscriber that reads what Redis pushes.

The process itself (start, PING, stop, kill, restart on the same address) is
echochat.launch_redis.RedisServer, which the redis-subscriber experiment uses
too; this adds what only tests do to it: freeze it, check how it ended, and
subscribe to channels to see what a network of echochat servers publishes.
"""

from __future__ import annotations

import os
import signal
from typing import Any

import hiredis

from echochat.launch_redis import STOP_TIMEOUT, Argument, RedisClient, RedisServer

# Lines in Redis's log that mean it crashed or failed an assertion.
_CRASH_MARKS = ("REDIS BUG REPORT", "Guru Meditation", "=== ASSERTION FAILED ===")


class PrivateRedis(RedisServer):
    """A RedisServer for a test: it can be frozen, and checks at stop that it never crashed."""

    def freeze(self) -> None:
        """SIGSTOP: Redis stops but its sockets stay; the kernel still accepts connections
        into the listen backlog and takes what clients send, and nothing is answered."""
        os.kill(self.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        """SIGCONT after ``freeze()``: Redis answers, in order, what waited meanwhile."""
        os.kill(self.pid, signal.SIGCONT)

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        if self.running:
            # A frozen Redis would hold SIGTERM until SIGKILL ends it.
            os.kill(self.pid, signal.SIGCONT)
        super().stop(timeout)
        log = self.log()
        for mark in _CRASH_MARKS:
            assert mark not in log, f"redis-server crashed:\n{log[-4000:]}"


class Subscriber(RedisClient):
    """A RESP2 connection in subscribed mode: SUBSCRIBE, then read the messages pushed."""

    def subscribe(self, *channels: Argument) -> None:
        """Subscribe and read Redis's confirmation of each channel."""
        self.send("SUBSCRIBE", *channels)
        for channel in channels:
            reply = self.read()
            expected = str(channel).encode() if not isinstance(channel, bytes) else channel
            assert reply[:2] == [b"subscribe", expected], reply

    def message(self) -> tuple[bytes, bytes]:
        """The next message as (channel, payload); fails on anything else."""
        push: Any = self.read()
        assert not isinstance(push, hiredis.ReplyError), push
        assert isinstance(push, list), push
        assert len(push) == 3, push
        assert push[0] == b"message", push
        return push[1], push[2]
