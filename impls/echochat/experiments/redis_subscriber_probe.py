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

echochat's kind is the exception that the experiment is about: its
subscriber is a chat server, not this process. Here URL is that server's
``irc://127.0.0.1:PORT`` and CHANNEL an IRC channel; this process is a user
of the server who joined the channel and reads what the server delivers
(the parent stops the server itself for the ``block`` stall). What a library
tells its application by raising, the server tells its users with a NOTICE:
``next_message`` returns those as ``Notice``, so that a message lost without
a word (a silent hole) can be told from one lost after a warning.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import asdict, dataclass, field

# Every subscriber connection carries this name, so the parent finds it in CLIENT LIST.
CLIENT_NAME = "echochat-subscriber"
# A message's payload starts with its sequence number in this many digits.
SEQUENCE_DIGITS = 10
# How long a library may take to connect and subscribe.
SUBSCRIBE_TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class Notice:
    """What the subscriber was told about its link, between two messages (echochat's NOTICE)."""

    text: str


# The payload of the next message, a Notice, or None if none came within
# ``patience`` seconds (or the library consumed a frame that was no message).
NextMessage = Callable[[float], Awaitable[bytes | Notice | None]]
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


# The nick of echochat's user here, and the lines it answers or reads.
READER_NICK = "reader"


@asynccontextmanager
async def echochat_link(url: str, channel: str) -> AsyncIterator[NextMessage]:
    """A user of the echochat server at ``url`` (irc://HOST:PORT), a member of ``channel``.

    The server subscribes to Redis; this returns once the server has run the
    user's JOIN (a PING's answer comes after it), and yields the payloads of
    the channel's messages and the server's notices. An ERROR line and the
    end of the connection (a user dropped for its SendQ) are raised.
    """
    address = urllib.parse.urlsplit(url)
    reader, writer = await asyncio.open_connection(address.hostname, address.port)
    privmsg = f" PRIVMSG {channel} :".encode()
    try:
        async with asyncio.timeout(SUBSCRIBE_TIMEOUT):
            # JOIN once welcomed: on a network the welcome waits for the user's
            # introduction to come back from Redis, and a JOIN before it is refused.
            writer.write(f"NICK {READER_NICK}\r\nUSER r 0 * :reader\r\n".encode())
            await _read_until(reader, f" 001 {READER_NICK} :".encode(), channel)
            # A registered user's PING is answered after its JOIN has run.
            writer.write(f"JOIN {channel}\r\nPING :subscribed\r\n".encode())
            await _read_until(reader, b" :subscribed\r\n", channel)

        async def next_message(patience: float) -> bytes | Notice | None:
            try:
                async with asyncio.timeout(patience):
                    return await _next_for_user(reader, writer, privmsg)
            except TimeoutError:
                return None

        yield next_message
    finally:
        writer.close()


async def _read_until(reader: asyncio.StreamReader, marker: bytes, channel: str) -> None:
    while marker not in (line := await reader.readline()):
        if not line or line.startswith(b"ERROR "):
            raise RuntimeError(f"echochat: not joined to {channel}: {line!r}")


async def _next_for_user(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, privmsg: bytes
) -> bytes | Notice:
    """The next message's payload or server notice; the rest (JOIN, QUIT...) is skipped."""
    while line := await reader.readline():
        if (start := line.find(privmsg)) >= 0:
            return line[start + len(privmsg) :].rstrip(b"\r\n")
        words = line.split(b" ", 3)
        if words[0] == b"PING":
            writer.write(b"PONG " + b" ".join(words[1:]))
        elif words[0] == b"ERROR":
            raise ConnectionError(f"the server closed the connection: {line.decode().strip()}")
        elif len(words) == 4 and words[1] == b"NOTICE" and words[3].startswith(b":***"):
            return Notice(words[3][1:].decode().strip())
    raise ConnectionError("the server closed the connection")


# The client kinds, by name, in redis_subscriber.ORDER.
KINDS: dict[str, Subscription] = {
    "redis-py": redis_py,
    "coredis": coredis_client,
    "echochat": echochat_link,
}
# The module each kind needs: a kind whose module is missing is skipped, and said so.
REQUIRES = {"redis-py": "redis", "coredis": "coredis", "echochat": "echochat"}


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
    # What the subscriber was told (echochat's notices), each after the message numbered.
    notices: list[tuple[int | None, str]] = field(default_factory=list)
    # Messages missing with no notice or error since the last one received: lost silently.
    silently_lost: int = 0

    def record(self, payload: bytes) -> None:
        sequence = int(payload[:SEQUENCE_DIGITS])
        if self.last is not None:
            if sequence <= self.last:
                self.backwards += 1
            else:
                self.skipped += sequence - self.last - 1
                self._hole(sequence - self.last - 1)
        else:
            self._hole(sequence)  # Those before the first.
        if self.first is None:
            self.first = sequence
        self.last = sequence
        self.received += 1

    def told(self, notice: Notice) -> None:
        self.notices.append((self.last, notice.text))

    def finish(self, count: int) -> None:
        """The end of reading: the messages after the last received are a hole too, unless
        the library raised (it said so)."""
        if self.error is None:
            self._hole(count - 1 - (-1 if self.last is None else self.last))

    def _hole(self, missing: int) -> None:
        if missing > 0 and not (self.notices and self.notices[-1][0] == self.last):
            self.silently_lost += missing


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
            if isinstance(payload, Notice):
                outcome.told(payload)
                idle_since = time.monotonic()
            elif payload is not None:
                outcome.record(payload)
                idle_since = time.monotonic()
        outcome.read_seconds = time.monotonic() - started
    outcome.finish(plan.count)
    return outcome


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m echochat.experiments.redis_subscriber_probe")
    parser.add_argument("kind", choices=list(KINDS))
    parser.add_argument("url", help="unix:///PATH or redis://HOST:PORT (echochat: irc://HOST:PORT)")
    parser.add_argument("channel", help="a Redis channel (echochat: an IRC channel)")
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
