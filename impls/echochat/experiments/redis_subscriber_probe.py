"""The subscriber of the redis-subscriber experiment, one client library per process.

``python -m echochat.experiments.redis_subscriber_probe KIND URL CHANNEL ...``
subscribes to CHANNEL with the library KIND, prints ``subscribed`` once Redis
has confirmed it, stalls for ``--stall`` seconds, then reads until it has
``--count`` messages, nothing came for ``--idle`` seconds, or the library
raised; it prints one JSON line of what it read, and exits when its stdin
closes. The parent publishes meanwhile and watches this process's memory and
its connection in Redis.

Two stalls: ``await`` (the application awaits something else while the event
loop runs, so a library that reads in a task of its own keeps reading) and
``block`` (the event loop itself is blocked, as by CPU-bound work, so no
library reads).

A client kind is one function: an async context manager that connects to
URL, subscribes to CHANNEL, returns once Redis confirmed the subscription,
and yields ``next_message(patience)``. Libraries are imported inside their
function: they are optional extras.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import asdict, dataclass

# Every subscriber connection carries this name, so the parent finds it in CLIENT LIST.
CLIENT_NAME = "echochat-subscriber"
# A message's payload starts with its sequence number in this many digits.
SEQUENCE_DIGITS = 10
# How long a library may take to connect and subscribe.
SUBSCRIBE_TIMEOUT = 10.0

# The payload of the next message, or None if none came within ``patience``
# seconds (or the library consumed a frame that was no message).
NextMessage = Callable[[float], Awaitable[bytes | None]]
Subscription = Callable[[str, str], AbstractAsyncContextManager[NextMessage]]


@asynccontextmanager
async def redis_py(url: str, channel: str) -> AsyncIterator[NextMessage]:
    """redis-py's asyncio client: PubSub reads only when get_message() is awaited."""
    from redis.asyncio import Redis  # noqa: PLC0415  (an optional extra)

    async with (
        Redis.from_url(url, client_name=CLIENT_NAME) as client,
        client.pubsub() as pubsub,
    ):
        await pubsub.subscribe(channel)
        # subscribe() only sends SUBSCRIBE; its confirmation is the first frame read.
        confirmation = await pubsub.get_message(timeout=SUBSCRIBE_TIMEOUT)
        if confirmation is None or confirmation["type"] != "subscribe":
            raise RuntimeError(f"redis-py: no subscribe confirmation: {confirmation!r}")

        async def next_message(patience: float) -> bytes | None:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=patience)
            return None if message is None else bytes(message["data"])

        yield next_message


@asynccontextmanager
async def coredis_client(url: str, channel: str) -> AsyncIterator[NextMessage]:
    """coredis (RESP3 only since 6.0): PubSub reads in a task of its own into a queue."""
    import coredis  # noqa: PLC0415  (an optional extra)

    client: coredis.Redis[bytes] = coredis.Redis.from_url(url, client_name=CLIENT_NAME)
    # pubsub(channels=...) subscribes on entry and waits for the confirmation.
    async with client, client.pubsub(channels=[channel]) as pubsub:

        async def next_message(patience: float) -> bytes | None:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=patience)
            if message is None:
                return None
            # A message's data; only (un)subscribe confirmations, filtered out, carry an int.
            data = message["data"]
            assert isinstance(data, bytes), message
            return data

        yield next_message


# The client kinds, by name. echochat's own Redis link (issue 16) becomes the
# third: one more function of the shape above, added here as "echochat", and
# the experiment measures it beside these (redis_subscriber.ORDER names it).
KINDS: dict[str, Subscription] = {
    "redis-py": redis_py,
    "coredis": coredis_client,
}
# The module each kind needs: a kind whose module is missing is skipped, and said so.
REQUIRES = {"redis-py": "redis", "coredis": "coredis"}


@dataclass(slots=True)
class Plan:
    kind: str
    url: str
    channel: str
    count: int
    stall: float
    blocking: bool
    idle: float
    deadline: float


@dataclass(slots=True)
class Outcome:
    """What the subscriber read after its stall."""

    received: int = 0
    first: int | None = None
    last: int | None = None
    # Sequence numbers skipped between two received messages, and steps backwards.
    skipped: int = 0
    backwards: int = 0
    error: str | None = None
    read_seconds: float = 0.0
    ended_by: str = "count"

    def record(self, payload: bytes) -> None:
        sequence = int(payload[:SEQUENCE_DIGITS])
        if self.last is not None:
            if sequence <= self.last:
                self.backwards += 1
            else:
                self.skipped += sequence - self.last - 1
        if self.first is None:
            self.first = sequence
        self.last = sequence
        self.received += 1


async def subscribe_and_stall(plan: Plan) -> Outcome:
    outcome = Outcome()
    async with KINDS[plan.kind](plan.url, plan.channel) as next_message:
        print("subscribed", flush=True)
        if plan.blocking:
            time.sleep(plan.stall)  # noqa: ASYNC251  (the point: the event loop is blocked)
        else:
            await asyncio.sleep(plan.stall)
        started = idle_since = time.monotonic()
        while outcome.received < plan.count:
            now = time.monotonic()
            if now - idle_since >= plan.idle:
                outcome.ended_by = f"nothing for {plan.idle:g} s"
                break
            if now >= plan.deadline:
                outcome.ended_by = "deadline"
                break
            try:
                payload = await next_message(plan.idle - (now - idle_since))
            except Exception as error:  # What the library raised is the result.
                outcome.error = f"{type(error).__module__}.{type(error).__qualname__}: {error}"
                outcome.ended_by = "raised"
                break
            if payload is not None:
                outcome.record(payload)
                idle_since = time.monotonic()
        outcome.read_seconds = time.monotonic() - started
    return outcome


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m echochat.experiments.redis_subscriber_probe")
    parser.add_argument("kind", choices=list(KINDS))
    parser.add_argument("url", help="unix:///PATH or redis://HOST:PORT")
    parser.add_argument("channel")
    parser.add_argument("--count", type=int, required=True, help="messages to read at most")
    parser.add_argument("--stall", type=float, required=True, help="seconds without reading")
    parser.add_argument("--stall-kind", choices=["await", "block"], required=True)
    parser.add_argument("--idle", type=float, required=True, help="seconds without a message")
    parser.add_argument("--seconds", type=float, required=True, help="most time in all")
    args = parser.parse_args()
    plan = Plan(
        kind=args.kind,
        url=args.url,
        channel=args.channel,
        count=args.count,
        stall=args.stall,
        blocking=args.stall_kind == "block",
        idle=args.idle,
        deadline=time.monotonic() + args.seconds,
    )
    outcome = asyncio.run(subscribe_and_stall(plan))
    print(json.dumps(asdict(outcome)), flush=True)
    # The parent watches this process's memory until it closes our stdin.
    sys.stdin.read()


if __name__ == "__main__":
    main()
