"""A network of chat servers on hosts of their own: Redis on one, a server on each other.

The hosts are network namespaces (tests/netns.py): the servers reach Redis
over a backbone, the test's clients reach the servers over another bridge,
so a server's link to Redis can be slowed or cut while its users stay
connected. Each test mixes two implementations. The rules themselves are the
pure tests of tests/core/test_federation.py and the adapters' carrying of them
on one machine is tests/contract/test_network.py; these check that they hold
across hosts, over a slow link and through a partition that heals.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from irc import IrcClient
from netns import ROOT_HOST, Host, Network, unavailable
from redisserver import PrivateRedis
from servers import ServerProcess

UNAVAILABLE = unavailable()
pytestmark = pytest.mark.skipif(UNAVAILABLE is not None, reason=str(UNAVAILABLE))

SPLIT = "*.net *.split"
# The contract: a server cut off is noticed, and its users split off, within 15 s.
NOTICED_WITHIN = 15.0
# A server that is cut off retries at most every 5 s (RETRY_MAX), then joins in
# about a second; a healed partition must be over well within this.
REJOINED_WITHIN = 15.0
REDIS_PORT = 6379


@dataclass(frozen=True)
class ChatServer:
    host: Host
    process: ServerProcess


class Machines:
    """A test's hosts: Redis on a host of its own, chat servers and their users' clients."""

    def __init__(self, network: Network, directory: Path, stack: contextlib.ExitStack) -> None:
        self.network = network
        self.stack = stack
        self.redis_host = network.add_host("redis", users=False)
        self.redis = stack.enter_context(
            PrivateRedis(
                directory,
                tcp=True,
                bind=self.redis_host.address,
                port=REDIS_PORT,
                wrapper=self.redis_host.wrapper,
            )
        )

    def host(self, role: str) -> Host:
        return self.network.add_host(role)

    def serve(
        self, host: Host, impl: str, *options: str, redis_url: str | None = None
    ) -> ChatServer:
        """``echochat serve`` on ``host`` as ROLE.test, once it has joined the network."""
        assert host.users_address is not None
        process = ServerProcess(
            impl,
            "chat",
            *("--host", host.users_address, "--server-name", f"{host.role}.test"),
            *("--redis", redis_url or self.redis.url, "--log-level", "info"),
            *options,
            wrapper=host.wrapper,
        )
        self.stack.callback(_stop, process)
        process.wait_for_log("joined the network")
        return ChatServer(host, process)

    def client(self, server: ChatServer, nick: str) -> IrcClient:
        """A registered user of ``server``, connected from the test's host."""
        assert server.host.users_address is not None
        client = IrcClient(server.process.port, host=server.host.users_address)
        self.stack.callback(client.close)
        client.register(nick)
        return client


def _stop(server: ServerProcess) -> None:
    if server.process.poll() is None:
        server.stop()


@pytest.fixture
def machines(tmp_path: Path) -> Iterator[Machines]:
    """Removed at the end, test failed or not: servers (checked for a clean exit), clients,
    Redis, then every namespace and veth (Network checks that none is left)."""
    with contextlib.closing(Network()) as network, contextlib.ExitStack() as stack:
        yield Machines(network, tmp_path, stack)


def test_a_channel_and_a_private_message_cross_between_hosts(machines: Machines) -> None:
    a = machines.serve(machines.host("a"), "asyncio")
    b = machines.serve(machines.host("b"), "trio")
    alice, bob = machines.client(a, "alice"), machines.client(b, "bob")
    alice.join("#hosts")
    names = bob.join("#hosts")
    assert any(line.endswith(" 353 bob = #hosts :@alice bob") for line in names), names
    # Users come from the test's own host, over the users' bridge.
    users_host = re.escape(str(machines.network.users[ROOT_HOST]))
    alice.expect(rf":bob!u@{users_host} JOIN #hosts")
    alice.send("PRIVMSG #hosts :from host a")
    bob.expect(rf":alice!u@{users_host} PRIVMSG #hosts :from host a")
    bob.send("PRIVMSG alice :and back from host b")
    alice.expect(r":bob!\S+ PRIVMSG alice :and back from host b")
    bob.send("WHOIS alice")
    whois = bob.read_until(r":\S+ 318 .*")
    assert any(re.fullmatch(r":\S+ 312 bob alice a\.test :.*", line) for line in whois), whois


# The slow link: 128 kbit/s each way with a 4 KiB bucket (tbf), and 100 ms each
# way (delay_relay.py) between the slow server and Redis. The load is sized so
# that its queue drains in about a second or two: under --split-after, so
# heartbeats must get through it and nobody may be split.
SLOW_RATE, SLOW_BURST, SLOW_DELAY = "128kbit", "4kb", 0.1
LINES = 40
SPLIT_AFTER = 3.0


def channel_texts(client: IrcClient, channel: str, count: int, within: float) -> list[str]:
    """The texts of the next ``count`` messages to ``channel``; fails on any other line."""
    deadline = time.monotonic() + within
    texts: list[str] = []
    while len(texts) < count:
        try:
            line = client.read_line(deadline)
        except TimeoutError:
            raise AssertionError(f"{client.nick}: {len(texts)} of {count} messages") from None
        message = re.fullmatch(rf":\S+ PRIVMSG {re.escape(channel)} :(.*)", line)
        assert message is not None, f"{client.nick} got {line!r} among the messages"
        texts.append(message[1])
    return texts


# Heartbeats over a throttled link: other tests' load must not delay them.
@pytest.mark.alone
def test_a_slow_link_delivers_everything_in_one_order_and_splits_nobody(
    machines: Machines,
) -> None:
    slow_host = machines.host("slow")
    slow_host.throttle(SLOW_RATE, SLOW_BURST)
    # The relay is on Redis's host: the slow server's bytes cross the throttled
    # link to it, and wait there SLOW_DELAY each way.
    redis_host = machines.redis_host
    redis_host.delay_relay(REDIS_PORT + 1, (redis_host.address, REDIS_PORT), SLOW_DELAY)
    relay_url = f"redis://{redis_host.address}:{REDIS_PORT + 1}"
    split_after = ("--split-after", f"{SPLIT_AFTER:g}")
    fast = machines.serve(machines.host("fast"), "trio", *split_after)
    slow = machines.serve(slow_host, "asyncio", *split_after, redis_url=relay_url)
    # A sender and a member who only reads on each server.
    alice, ann = machines.client(fast, "alice"), machines.client(fast, "ann")
    sam, sue = machines.client(slow, "sam"), machines.client(slow, "sue")
    for client in (alice, ann, sam, sue):
        client.join("#slow")
    alice.read_until(r":sue!\S+ JOIN #slow")
    for client in (ann, sam):
        client.sync()  # Everyone has seen everyone join.
    padding = "x" * 100
    alice.send(*(f"PRIVMSG #slow :a {n} {padding}" for n in range(LINES)))
    sam.send(*(f"PRIVMSG #slow :s {n} {padding}" for n in range(LINES)))
    on_fast = channel_texts(ann, "#slow", 2 * LINES, within=30)
    on_slow = channel_texts(sue, "#slow", 2 * LINES, within=30)
    # One order for every member on every server, and each sender's in its order.
    assert on_fast == on_slow
    for sender in ("a", "s"):
        numbers = [int(text.split()[1]) for text in on_fast if text.startswith(f"{sender} ")]
        assert numbers == list(range(LINES))
    assert channel_texts(alice, "#slow", LINES, within=5) == [t for t in on_fast if t[0] == "s"]
    assert channel_texts(sam, "#slow", LINES, within=5) == [t for t in on_fast if t[0] == "a"]
    # Nobody was split: had the slow link held a server's heartbeats back for
    # SPLIT_AFTER, its users' QUITs would come within SPLIT_AFTER of the end.
    quiet_until = time.monotonic() + SPLIT_AFTER + 1
    for client in (alice, ann, sam, sue):
        assert client.read_for(max(quiet_until - time.monotonic(), 0.0)) == []
    sam.send("PRIVMSG alice :still linked")
    alice.expect(r":sam!\S+ PRIVMSG alice :still linked")


def test_a_partition_splits_within_15_s_and_heals_with_the_older_nicks_kept(
    machines: Machines,
) -> None:
    a = machines.serve(machines.host("a"), "anyio-asyncio")
    cut_host = machines.host("b")
    b = machines.serve(cut_host, "anyio-trio")
    alice = machines.client(a, "alice")
    bob, bea = machines.client(b, "bob"), machines.client(b, "bea")
    for client in (alice, bob, bea):
        client.join("#part")
    alice.read_until(r":bea!\S+ JOIN #part")
    bob.sync()

    cut_host.cut()
    noticed_by = time.monotonic() + NOTICED_WITHIN
    # Each side sees the other's users split off, and b's users are told why.
    split_off = [rf":{nick}!\S+ QUIT :{re.escape(SPLIT)}" for nick in ("bob", "bea")]
    alice.read_until(*split_off, within=NOTICED_WITHIN)
    lost = r":b\.test NOTICE \S+ :\*\*\* Lost the link to the network .*"
    for client in (bob, bea):
        left = noticed_by - time.monotonic()
        client.read_until(lost, rf":alice!\S+ QUIT :{re.escape(SPLIT)}", within=left)
    # b's users still talk among themselves.
    bob.send("PRIVMSG #part :only on b")
    bea.expect(r":bob!\S+ PRIVMSG #part :only on b")
    # Each side gives a newcomer the nick of a user of the other side, who is older.
    bob_on_a, alice_on_b = machines.client(a, "bob"), machines.client(b, "alice")

    cut_host.heal()
    linked = r":b\.test NOTICE \S+ :\*\*\* Linked to the network.*"
    for client in (bob, bea):
        client.read_until(linked, within=REJOINED_WITHIN)
    # b's users are back in the channel, for a's users and for each other;
    # what they said meanwhile stayed on b.
    back = alice.read_until(r":bob!\S+ JOIN #part", r":bea!\S+ JOIN #part", within=5)
    assert not any("only on b" in line for line in back), back
    bob.read_until(r":alice!\S+ JOIN #part", within=5)
    # The older nicks are kept; the newcomers are renamed, on every server.
    bob_on_a.read_until(r":bob!\S+ NICK :?Guest\d+", within=5)
    alice_on_b.read_until(r":alice!\S+ NICK :?Guest\d+", within=5)
    alice.send("WHOIS bob")
    whois = alice.read_until(r":\S+ 318 .*", within=5)
    assert any(re.fullmatch(r":\S+ 312 alice bob b\.test :.*", line) for line in whois), whois
    # And messages cross again, to the users who kept their nicks.
    alice.send("PRIVMSG #part :across again")
    for client in (bob, bea):
        client.read_until(r":alice!\S+ PRIVMSG #part :across again", within=5)
    bob.send("PRIVMSG alice :to the older alice")
    alice.read_until(r":bob!\S+ PRIVMSG alice :to the older alice", within=5)
    assert alice_on_b.sync() == []
