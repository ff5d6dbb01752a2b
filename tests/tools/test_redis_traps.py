"""What Redis 7.0 (Debian bookworm's redis-server) and hiredis-py do, where a Redis link could
be wrong about it: output buffer limits on subscribers, the bytes of a push, the order of
messages, leases, garbage input, and the ways to make Redis stall or refuse in a test.

Each test runs against a private redis-server (the ``redis`` fixture); sources are Redis
7.0.15's src/networking.c, src/pubsub.c and src/server.c, and hiredis-py's README.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import hiredis
import pytest

from echochat.launch_redis import RedisClient, client_list
from redisserver import PrivateRedis, Subscriber

KiB = 1024
# Lua-free it cannot be done in 7.0; with EVAL: refresh the lease only while it is ours.
REFRESH_IF_OURS = (
    "if redis.call('GET', KEYS[1]) == ARGV[1] then "
    "return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end"
)


def raw_connection(redis: PrivateRedis, timeout: float = 5.0) -> socket.socket:
    assert redis.socket_path is not None
    sock = socket.socket(socket.AF_UNIX)
    sock.settimeout(timeout)
    sock.connect(str(redis.socket_path))
    return sock


def read_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        assert chunk, f"EOF after {data!r}"
        data += chunk
    return data


def read_to_eof(sock: socket.socket) -> bytes:
    """Everything until the peer closes (TimeoutError if it does not)."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def publish_kib(publisher: RedisClient, channel: str, count: int) -> None:
    publisher.send_many(("PUBLISH", channel, b"m" * KiB) for _ in range(count))
    for _ in range(count):
        publisher.read()


# (a) client-output-buffer-limit pubsub, RESP2 and RESP3 subscribers


def stalled_subscribers(redis: PrivateRedis) -> dict[str, Subscriber]:
    """A RESP2 and a RESP3 (HELLO 3) subscriber to "ch", named resp2 and resp3, not reading."""
    subscribers = {}
    for resp in (2, 3):
        subscriber = Subscriber(redis.address)
        if resp == 3:
            assert subscriber.command("HELLO", 3)[b"proto"] == 3
        subscriber.command("CLIENT", "SETNAME", f"resp{resp}")
        subscriber.subscribe("ch")
        subscribers[f"resp{resp}"] = subscriber
    return subscribers


def test_the_pubsub_limit_cuts_resp2_and_resp3_subscribers_alike(
    start_redis: Callable[..., PrivateRedis],
) -> None:
    """getClientType() is PUBSUB for any client with CLIENT_PUBSUB, which SUBSCRIBE sets
    whatever the protocol (networking.c getClientType; pubsub.c subscribeCommand)."""
    redis = start_redis(options=("--client-output-buffer-limit", "pubsub 256kb 0 0"))
    subscribers = stalled_subscribers(redis)
    with redis.client() as publisher:
        flags = {entry["name"]: entry["flags"] for entry in client_list(publisher)}
        assert "P" in flags["resp2"]
        assert "P" in flags["resp3"]
        publish_kib(publisher, "ch", 2048)
        # Redis closes them itself: what the kernel held, then the end of the stream.
        for subscriber in subscribers.values():
            read_to_eof(subscriber.sock)
            subscriber.close()
        assert {entry["name"] for entry in client_list(publisher)} == {""}
    log = redis.log()
    for name in subscribers:
        assert f"name={name} " in log
    assert log.count("for overcoming of output buffer limits") == 2


def test_the_normal_limit_does_not_apply_to_a_resp3_subscriber(
    start_redis: Callable[..., PrivateRedis],
) -> None:
    """The other half: a subscriber is never of the normal class, RESP3 or not."""
    limits = "pubsub 0 0 0 normal 256kb 0 0"
    redis = start_redis(options=("--client-output-buffer-limit", limits))
    subscribers = stalled_subscribers(redis)
    with redis.client() as publisher:
        publish_kib(publisher, "ch", 2048)
        held = {entry["name"]: int(entry["omem"]) for entry in client_list(publisher)}
    assert held["resp2"] > 256 * KiB
    assert held["resp3"] > 256 * KiB
    assert "output buffer limits" not in redis.log()
    for subscriber in subscribers.values():
        subscriber.close()


# (b) The bytes of a push


def test_subscribe_and_message_pushes_in_resp2_and_resp3(redis: PrivateRedis) -> None:
    """RESP2: an array of 3 (*3); RESP3: a push of 3 (>3), same elements (pubsub.c
    addReplyPubsubSubscribed, addReplyPubsubMessage)."""
    with raw_connection(redis) as resp2, raw_connection(redis) as resp3, redis.client() as pub:
        resp3.sendall(b"HELLO 3\r\n")
        assert hiredis_reply(resp3)[b"proto"] == 3
        for sock in (resp2, resp3):
            sock.sendall(b"SUBSCRIBE ch\r\n")
        expected = b"3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n"
        assert read_exactly(resp2, 1 + len(expected)) == b"*" + expected
        assert read_exactly(resp3, 1 + len(expected)) == b">" + expected
        assert pub.command("PUBLISH", "ch", "hello") == 2
        expected = b"3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$5\r\nhello\r\n"
        assert read_exactly(resp2, 1 + len(expected)) == b"*" + expected
        assert read_exactly(resp3, 1 + len(expected)) == b">" + expected


def hiredis_reply(sock: socket.socket) -> Any:
    reader = hiredis.Reader()
    while (reply := reader.gets()) is False:
        reader.feed(sock.recv(65536))
    return reply


def test_hiredis_returns_a_push_as_a_list_in_resp2_and_a_push_notification_in_resp3() -> None:
    reader = hiredis.Reader()
    reader.feed(b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$1\r\nx\r\n")
    reader.feed(b">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$1\r\nx\r\n")
    resp2, resp3 = reader.gets(), reader.gets()
    assert type(resp2) is list
    assert isinstance(resp3, hiredis.PushNotification)
    assert isinstance(resp3, list)  # A subclass: isinstance(list) does not tell them apart.
    assert resp2 == resp3 == [b"message", b"ch", b"x"]


def test_hiredis_returns_reply_errors_and_raises_protocol_errors() -> None:
    """hiredis-py README: "the error class hiredis.ReplyError is returned, but not raised"."""
    reader = hiredis.Reader()
    reader.feed(b"-ERR nope\r\n*2\r\n-WRONGTYPE x\r\n:1\r\n")
    error = reader.gets()
    assert isinstance(error, hiredis.ReplyError)
    assert str(error) == "ERR nope"
    nested = reader.gets()
    assert isinstance(nested[0], hiredis.ReplyError)  # Inside an array (EXEC's replies) too.
    assert nested[1] == 1
    reader.feed(b"?garbage\r\n")
    with pytest.raises(hiredis.ProtocolError):
        reader.gets()
    # The reader is broken for good: a new connection needs a new Reader.
    reader.feed(b"+OK\r\n")
    with pytest.raises(hiredis.ProtocolError):
        reader.gets()


def test_hiredis_not_enough_data_is_false_by_default_like_a_resp3_false() -> None:
    reader = hiredis.Reader()
    assert reader.gets() is False  # Nothing yet...
    reader.feed(b"#f\r\n")
    assert reader.gets() is False  # ...and a whole RESP3 boolean false: the same value.
    incomplete = object()
    reader = hiredis.Reader(notEnoughData=incomplete)
    reader.feed(b"$5\r\nhel")
    assert reader.gets() is incomplete
    assert reader.len() == 7  # The bytes it holds.
    reader.feed(b"lo\r\n#f\r\n")
    assert reader.gets() == b"hello"
    assert reader.has_data()
    assert reader.gets() is False
    assert reader.gets() is incomplete
    assert not reader.has_data()


def test_hiredis_maxbuf_bounds_what_an_empty_reader_keeps_not_what_it_buffers() -> None:
    """hiredis's read.c: the buffer is freed when empty and larger than maxbuf (16 KiB by
    default); a reply larger than maxbuf is still read whole."""
    reader = hiredis.Reader()
    assert reader.getmaxbuf() == 16 * KiB
    reader.setmaxbuf(KiB)
    big = b"x" * (64 * KiB)
    reader.feed(b"$%d\r\n" % len(big) + big[: 32 * KiB])
    assert reader.len() > KiB  # Not refused: maxbuf is no limit on what it holds.
    reader.feed(big[32 * KiB :] + b"\r\n")
    assert reader.gets() == big


# (c) Order on one channel


def test_every_subscriber_of_a_channel_gets_its_messages_in_one_order(
    redis: PrivateRedis,
) -> None:
    """PUBLISH appends the message to every subscriber's output buffer before the next
    command runs (pubsub.c pubsubPublishMessageInternal), and commands run one at a time."""
    subscribers = [Subscriber(redis.address) for _ in range(3)]
    for subscriber in subscribers:
        subscriber.subscribe("ch")
    publishers = [redis.client() for _ in range(2)]
    # Two publishers' pipelines, interleaved in Redis as their bytes arrive.
    for publisher, name in zip(publishers, "ab", strict=True):
        publisher.send_many(("PUBLISH", "ch", f"{name}{n}") for n in range(500))
    for publisher in publishers:
        assert [publisher.read() for _ in range(500)] == [3] * 500
        publisher.close()
    seen = [[subscriber.message()[1] for _ in range(1000)] for subscriber in subscribers]
    assert seen[0] == seen[1] == seen[2]
    for name in "ab":  # Each publisher's own messages in the order it sent them.
        assert [m for m in seen[0] if m.startswith(name.encode())] == [
            f"{name}{n}".encode() for n in range(500)
        ]
    for subscriber in subscribers:
        subscriber.close()


def test_a_message_published_while_nobody_subscribes_is_never_delivered(
    redis: PrivateRedis,
) -> None:
    """Pub/sub keeps nothing: a subscriber that was cut and subscribes again gets only what
    is published after it did (at most once), with nothing to say that it missed one."""
    subscriber = Subscriber(redis.address)
    subscriber.subscribe("ch")
    with redis.client() as publisher:
        assert publisher.command("PUBLISH", "ch", "before") == 1
        assert subscriber.message() == (b"ch", b"before")
        subscriber.close()  # Cut: what comes now is published to nobody ...
        # ... once Redis has seen the close, which each round trip here gives it
        # the chance to (bounded: a Redis that never notices fails the test).
        for _ in range(10_000):
            if publisher.command("PUBSUB", "NUMSUB", "ch")[1] == 0:
                break
        assert publisher.command("PUBLISH", "ch", "missed") == 0
        subscriber = Subscriber(redis.address)
        subscriber.subscribe("ch")
        assert publisher.command("PUBLISH", "ch", "after") == 1
    assert subscriber.message() == (b"ch", b"after")
    subscriber.close()


# (d) A lease: take it with SET NX PX, refresh it only while it is ours


def test_a_lease_is_taken_once_with_set_nx_px(redis: PrivateRedis) -> None:
    with redis.client() as one, redis.client() as other:
        assert one.command("SET", "lease", "one", "NX", "PX", 5000) == b"OK"
        assert other.command("SET", "lease", "other", "NX", "PX", 5000) is None
        # NX with GET (7.0): refused, and told who holds it.
        assert other.command("SET", "lease", "other", "NX", "GET", "PX", 5000) == b"one"
        assert 0 < one.command("PTTL", "lease") <= 5000


def test_set_xx_get_is_no_compare_and_set_it_overwrites_another_holder(
    redis: PrivateRedis,
) -> None:
    with redis.client() as client:
        client.command("SET", "lease", "other", "PX", 5000)
        # "Refresh" by SET XX GET: the GET says it was not ours only after it is overwritten.
        assert client.command("SET", "lease", "one", "XX", "GET", "PX", 9000) == b"other"
        assert client.command("GET", "lease") == b"one"
        # 7.0 has no value-conditional SET.
        with pytest.raises(hiredis.ReplyError, match="syntax error"):
            client.command("SET", "lease", "one", "IFEQ", "one")


def test_watch_multi_exec_refreshes_a_lease_only_if_nobody_changed_it(
    redis: PrivateRedis,
) -> None:
    """Optimistic locking without Lua: EXEC returns nil if a WATCHed key changed."""
    with redis.client() as one, redis.client() as other:
        one.command("SET", "lease", "one", "PX", 5000)
        one.command("WATCH", "lease")
        assert one.command("GET", "lease") == b"one"
        one.command("MULTI")
        assert one.command("PEXPIRE", "lease", 9000) == b"QUEUED"
        assert one.command("EXEC") == [1]
        assert one.command("PTTL", "lease") > 5000

        one.command("WATCH", "lease")
        assert one.command("GET", "lease") == b"one"
        other.command("SET", "lease", "other", "PX", 5000)  # Taken over meanwhile.
        one.command("MULTI")
        one.command("PEXPIRE", "lease", 9000)
        assert one.command("EXEC") is None
        assert other.command("PTTL", "lease") <= 5000


def test_eval_refreshes_a_lease_only_if_it_holds_our_value(redis: PrivateRedis) -> None:
    with redis.client() as client:
        client.command("SET", "lease", "one", "PX", 5000)
        assert client.command("EVAL", REFRESH_IF_OURS, 1, "lease", "other", 9000) == 0
        assert client.command("PTTL", "lease") <= 5000
        assert client.command("EVAL", REFRESH_IF_OURS, 1, "lease", "one", 9000) == 1
        assert client.command("PTTL", "lease") > 5000


# (e) Garbage input


@pytest.mark.parametrize(
    ("garbage", "error"),
    [
        (b"*x\r\n", b"-ERR Protocol error: invalid multibulk length\r\n"),
        (b"*1\r\n$x\r\n", b"-ERR Protocol error: invalid bulk length\r\n"),
        (b"*1\r\n*1\r\n", b"-ERR Protocol error: expected '$', got '*'\r\n"),
        (b'"unbalanced\r\n', b"-ERR Protocol error: unbalanced quotes in request\r\n"),
        (b"x" * (64 * KiB + 1), b"-ERR Protocol error: too big inline request\r\n"),
    ],
)
def test_a_protocol_error_is_answered_then_the_connection_closed(
    redis: PrivateRedis, garbage: bytes, error: bytes
) -> None:
    """setProtocolError() sets CLIENT_CLOSE_AFTER_REPLY (networking.c)."""
    with raw_connection(redis) as sock:
        sock.sendall(garbage)
        assert read_to_eof(sock) == error


def test_bytes_not_starting_with_a_star_are_an_inline_command(redis: PrivateRedis) -> None:
    with raw_connection(redis) as sock:
        sock.sendall(b"garbage here\r\nPING\r\n")
        expected = b"-ERR unknown command 'garbage', with args beginning with: 'here' \r\n+PONG\r\n"
        assert read_exactly(sock, len(expected)) == expected


def test_http_is_closed_without_a_reply(redis: PrivateRedis) -> None:
    """A "POST" or "Host:" command closes the connection (server.c processCommand,
    securityWarningCommand)."""
    with raw_connection(redis) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_to_eof(sock) == b""
    assert "Possible SECURITY ATTACK detected" in redis.log()


# (f) Making Redis refuse, drop or stall a client in a test


def test_client_kill_type_pubsub_ends_every_subscriber_at_once(redis: PrivateRedis) -> None:
    with Subscriber(redis.address) as subscriber, redis.client() as admin:
        subscriber.subscribe("ch")
        assert admin.command("CLIENT", "KILL", "TYPE", "pubsub") == 1
        with pytest.raises(ConnectionError):
            subscriber.read()


def test_client_pause_all_holds_every_command_client_unpause_included(
    redis: PrivateRedis,
) -> None:
    """In 7.0 processCommand() postpones every command under PAUSE ALL (server.c), so only
    its timeout ends it; under PAUSE WRITE, CLIENT UNPAUSE runs (the next test)."""
    with redis.client() as admin, redis.client(timeout=0.3) as client:
        assert admin.command("CLIENT", "PAUSE", 800, "ALL") == b"OK"
        client.send("PING")
        admin.send("CLIENT", "UNPAUSE")
        with pytest.raises(TimeoutError):
            client.read()
        client.sock.settimeout(5)
        assert client.read() == b"PONG"  # Once the 800 ms are over.
        assert admin.read() == b"OK"


def test_client_pause_write_holds_publish_but_not_ping(redis: PrivateRedis) -> None:
    with Subscriber(redis.address) as subscriber, redis.client() as admin:
        subscriber.subscribe("ch")
        with redis.client(timeout=0.3) as client:
            admin.command("CLIENT", "PAUSE", 60_000, "WRITE")
            assert client.command("PING") == b"PONG"
            client.send("PUBLISH", "ch", "held")
            with pytest.raises(TimeoutError):
                client.read()
            admin.command("CLIENT", "UNPAUSE")
            client.sock.settimeout(5)
            assert client.read() == 1
        assert subscriber.message() == (b"ch", b"held")


def test_maxclients_refuses_a_new_connection_with_an_error_then_closes_it(
    redis: PrivateRedis,
) -> None:
    with redis.client() as admin:
        admin.command("CONFIG", "SET", "maxclients", 1)
        with raw_connection(redis) as refused:
            assert read_to_eof(refused) == b"-ERR max number of clients reached\r\n"


def test_debug_sleep_needs_enable_debug_command(
    redis: PrivateRedis, start_redis: Callable[..., PrivateRedis]
) -> None:
    with redis.client() as client, pytest.raises(hiredis.ReplyError, match="DEBUG command not"):
        client.command("DEBUG", "SLEEP", 0)
    allowed = start_redis(options=("--enable-debug-command", "local"))
    with allowed.client() as sleeper, allowed.client(timeout=0.3) as other:
        sleeper.send("DEBUG", "SLEEP", "0.6")
        with pytest.raises(TimeoutError):
            other.command("PING")  # The whole server sleeps, not one connection.
        other.sock.settimeout(5)
        assert other.read() == b"PONG"
        assert sleeper.read() == b"OK"
