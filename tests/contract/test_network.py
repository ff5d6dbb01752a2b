"""Channels across servers (--redis), over a real Redis, for every implementation.

Each test starts a private Redis on a unix socket and servers of the
implementation under test beside a server of another implementation
(``partner``), so every implementation is checked against a different one.
The rules themselves, in every interleaving, are the pure tests of
tests/core/test_federation.py; these check that each adapter carries them.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack

import pytest

from echochat.experiments.burst import BurstReader, burst
from echochat.launch import echochat_command
from echochat.registry import parse_configuration
from flood import BURSTS, SEND_BUFFER
from irc import IrcClient, unique_channel, unique_nick
from redisserver import PrivateRedis
from servers import ServerProcess, echochat

SPLIT = "*.net *.split"
# Fast enough for a test, and still three heartbeats.
SPLIT_AFTER = "3"


@pytest.fixture(scope="module")
def partner(impl: str) -> str:
    """Another implementation, for the second server: different from the one under test."""
    return "trio" if not impl.startswith("trio") else "asyncio"


@pytest.fixture(scope="module")
def third(impl: str, partner: str) -> str:
    """A third implementation, different from both, for tests with three servers."""
    base = impl.split("+", maxsplit=1)[0]
    return next(name for name in ("anyio-trio", "anyio-asyncio") if name not in (base, partner))


@pytest.fixture
def network_server(impl: str, redis: PrivateRedis) -> Iterator[Callable[..., ServerProcess]]:
    """Start chat servers on the test's Redis: ``network_server(name, impl=None, *options)``."""
    started: list[ServerProcess] = []

    def start(name: str, implementation: str | None = None, *options: str) -> ServerProcess:
        server = ServerProcess(
            implementation or impl,
            "chat",
            "--redis",
            redis.url,
            "--server-name",
            name,
            "--split-after",
            SPLIT_AFTER,
            "--log-level",
            "info",
            *options,
        )
        started.append(server)
        server.wait_for_log("joined the network")
        return server

    yield start
    for server in started:
        if server.process.poll() is None:
            server.stop()


def joined_client(
    server: ServerProcess, open_client: Callable[..., IrcClient], nick: str
) -> IrcClient:
    client = open_client(server.port)
    client.register(nick)
    return client


def test_a_channel_private_messages_nicks_and_queries_span_two_implementations(
    impl: str,
    partner: str,
    network_server: Callable[..., ServerProcess],
    open_client: Callable[..., IrcClient],
) -> None:
    a = network_server("a.test")
    b = network_server("b.test", partner)
    alice_nick, bob_nick, channel = unique_nick("alice"), unique_nick("bob"), unique_channel()
    alice = joined_client(a, open_client, alice_nick)
    bob = joined_client(b, open_client, bob_nick)
    alice.join(channel)
    names = bob.join(channel)
    assert any(re.search(rf" 353 .*:@{alice_nick} {bob_nick}$", line) for line in names), names
    alice.expect(rf":{bob_nick}!\S+ JOIN {channel}")
    # Both ways, and each member gets one copy, in one order.
    alice.send(*(f"PRIVMSG {channel} :from a {n}" for n in range(20)))
    bob.send(*(f"PRIVMSG {channel} :from b {n}" for n in range(20)))
    bob_got = [line for line in bob.read_until(r".*:from a 19") if "from a" in line]
    assert [line.rsplit(" ", 1)[1] for line in bob_got] == [str(n) for n in range(20)]
    alice_got = [line for line in alice.read_until(r".*:from b 19") if "from b" in line]
    assert len(alice_got) == 20
    # A private message, a nick taken on the other server, WHOIS naming the server.
    bob.send(f"PRIVMSG {alice_nick} :psst")
    alice.expect(rf":{bob_nick}!\S+ PRIVMSG {alice_nick} :psst")
    bob.send(f"NICK {alice_nick}")
    bob.expect(rf":\S+ 433 {bob_nick} {alice_nick} :Nickname is already in use")
    bob.send(f"WHOIS {alice_nick}")
    whois = bob.read_until(r":\S+ 318 .*")
    assert any(
        re.fullmatch(rf":\S+ 312 {bob_nick} {alice_nick} a\.test :.*", line) for line in whois
    )
    # Moderation across servers: alice is the channel's operator.
    alice.send(f"KICK {channel} {bob_nick} :out")
    bob.expect(rf":{alice_nick}!\S+ KICK {channel} {bob_nick} :out")
    alice.expect(rf":{alice_nick}!\S+ KICK {channel} {bob_nick} :out")
    bob.join(channel)
    alice.expect(rf":{bob_nick}!\S+ JOIN {channel}")
    # A server that stops cleanly hands Redis its SPLIT first: its users quit
    # for the others at once, well before --split-after.
    a.stop()
    bob.expect(rf":{alice_nick}!\S+ QUIT :{re.escape(SPLIT)}")


def test_a_killed_server_is_split_and_a_restarted_redis_is_rejoined(
    partner: str,
    third: str,
    redis: PrivateRedis,
    network_server: Callable[..., ServerProcess],
    open_client: Callable[..., IrcClient],
) -> None:
    a = network_server("a.test")
    b = network_server("b.test", partner)
    channel = unique_channel()
    alice = joined_client(a, open_client, unique_nick("alice"))
    bob_nick = unique_nick("bob")
    bob = joined_client(b, open_client, bob_nick)
    alice.join(channel)
    bob.join(channel)
    alice.expect(rf":{bob_nick}!\S+ JOIN {channel}")
    b.kill()  # SIGKILL: no SPLIT, no lease released; the others must notice.
    started = time.monotonic()
    alice.expect(rf":{bob_nick}!\S+ QUIT :{re.escape(SPLIT)}")
    assert time.monotonic() - started < 15
    # bob's nick is free again.
    again = joined_client(a, open_client, bob_nick)
    # Redis goes away: a keeps serving its own users and tells them.
    redis.stop()
    alice.expect(r":a\.test NOTICE \S+ :\*\*\* Lost the link to the network .*")
    again.expect(r":a\.test NOTICE \S+ :\*\*\* Lost the link to the network .*")
    alice.send(f"PRIVMSG {bob_nick} :still here?")
    again.expect(rf":{alice.nick}!\S+ PRIVMSG {bob_nick} :still here\?")
    redis.start()
    alice.expect(r":a\.test NOTICE \S+ :\*\*\* Linked to the network.*")
    c = network_server("c.test", third)
    carol = joined_client(c, open_client, unique_nick("carol"))
    carol.send(f"PRIVMSG {alice.nick} :welcome back")
    alice.expect(rf":{carol.nick}!\S+ PRIVMSG {alice.nick} :welcome back")


def test_a_name_in_use_is_refused_in_one_line_and_freed_by_a_graceful_stop(
    impl: str, redis: PrivateRedis, network_server: Callable[..., ServerProcess]
) -> None:
    first = network_server("taken.test")
    implementation, loop = parse_configuration(impl)
    refused = echochat(
        *echochat_command(implementation.name, "chat", loop=loop)[3:],
        *("--redis", redis.url, "--server-name", "taken.test"),
    )
    assert refused.returncode == 2, refused
    *logged, last = refused.stderr.splitlines()
    assert last.startswith("echochat: cannot join the network: the server name 'taken.test'")
    assert "in use by another live server" in last
    assert not any("Traceback" in line or "ERROR" in line for line in logged), refused.stderr
    # Stopped gracefully, a server frees its name at once: started again at
    # once (as systemctl restart would), it is not refused.
    first.stop()
    network_server("taken.test")


def test_an_unreachable_redis_at_start_is_retried_while_users_are_served(
    impl: str,
    tmp_path_factory: pytest.TempPathFactory,
    open_client: Callable[..., IrcClient],
) -> None:
    directory = tmp_path_factory.mktemp("late")
    # Where the Redis started below will listen; nothing listens there yet.
    url = f"unix://{directory}/redis.sock"
    server = ServerProcess(impl, "chat", "--redis", url, "--server-name", "late.test")
    try:
        server.wait_for_log("cannot reach Redis")
        alice = open_client(server.port)
        alice.register(unique_nick("alice"))
        alice.expect(r":\S+ NOTICE \S+ :\*\*\* This server is not linked to its network yet.*")
        with PrivateRedis(directory) as redis:
            assert redis.url == url
            alice.expect(r":\S+ NOTICE \S+ :\*\*\* Linked to the network.*")
            server.stop()
    finally:
        if server.process.poll() is None:
            server.kill()


# The fast member must keep up with a burst at full speed: no other test's load
# may starve it (under pytest-xdist the other workers wait), as in test_sendq.py.
@pytest.mark.alone
def test_a_client_that_never_reads_is_dropped_and_the_network_stays_healthy(
    impl: str,
    partner: str,
    network_server: Callable[..., ServerProcess],
    open_client: Callable[..., IrcClient],
) -> None:
    """A 1 MB burst from a user of another server: the member that reads at kernel speed gets
    every line in order, the one that never reads is dropped for SendQ (as in test_sendq.py),
    and the network stays whole."""
    a = network_server("a.test", None, "--sendq", "65536", "--send-buffer", str(SEND_BUFFER))
    b = network_server("b.test", partner)
    channel = unique_channel()
    fast = joined_client(a, open_client, unique_nick("fast"))
    stalled = open_client(a.port, rcvbuf=4096)
    stalled.register(unique_nick("stalled"))
    talker = joined_client(b, open_client, unique_nick("talker"))
    for client in (fast, stalled, talker):
        client.join(channel)
    fast.sync()
    lines, size = BURSTS[0]
    data = burst(channel, lines, size)
    reader = BurstReader(fast.sock, talker.nick, lines, time.monotonic() + 20, stalled.nick)
    reader.start()
    talker.send_raw(data)
    reader.join(25)
    got = reader.received
    assert got.ended is None, f"the fast member was cut off: {got.ended} after {got.got} lines"
    assert (got.got, got.disorder) == (lines, 0)
    assert got.quit_after is not None  # The stalled member's QUIT :SendQ exceeded.
    # The network is still whole: a message still crosses, both ways.
    fast.send(f"PRIVMSG {talker.nick} :ok")
    talker.read_until(rf":{fast.nick}!\S+ PRIVMSG {talker.nick} :ok")


def test_a_redis_url_that_points_at_something_else_is_a_lost_link_never_a_crash(
    impl: str, open_client: Callable[..., IrcClient]
) -> None:
    """A web server where Redis should be: each answer is not RESP, so the link is lost and
    retried; the server keeps serving its users, and logs warnings, never a traceback."""
    with socket.create_server(("127.0.0.1", 0)) as impostor:
        impostor.settimeout(10)
        port = impostor.getsockname()[1]
        server = ServerProcess(
            impl, "chat", "--redis", f"redis://127.0.0.1:{port}", "--server-name", "lost.test"
        )
        answered = 0
        with ExitStack() as connections:
            # The link opens two connections each time it tries; answer a few tries.
            while answered < 4:
                connection, _ = impostor.accept()
                connections.enter_context(connection)
                connection.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                answered += 1
            server.wait_for_log("not RESP")
            alice = open_client(server.port)
            alice.register(unique_nick("alice"))
            alice.expect(r":\S+ NOTICE \S+ :\*\*\* This server is not linked to its network yet.*")
        server.stop()
