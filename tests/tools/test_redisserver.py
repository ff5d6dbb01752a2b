"""The private Redis of the tests (tests/redisserver.py, echochat.launch_redis): a real
redis-server that starts, answers, stops, dies and comes back on the same address."""

from __future__ import annotations

import os
import signal
import socket
import stat
import time
from collections.abc import Callable
from pathlib import Path

import hiredis
import pytest

from echochat import launch_redis
from echochat.launch_redis import RedisClient, RedisServer, RedisStartError, client_list
from redisserver import PrivateRedis, Subscriber


def test_the_fixture_serves_a_unix_socket_only_we_may_use(redis: PrivateRedis) -> None:
    assert redis.socket_path is not None
    assert redis.url == f"unix://{redis.socket_path}"
    assert redis.url.startswith("unix:///")
    assert stat.S_IMODE(redis.socket_path.stat().st_mode) == 0o700
    with redis.client() as client:
        assert client.command("PING") == b"PONG"
        # --port 0: no TCP listener at all; nothing saved to disk.
        assert client.command("CONFIG", "GET", "port") == [b"port", b"0"]
        assert client.command("CONFIG", "GET", "save") == [b"save", b""]
        assert client.command("CONFIG", "GET", "appendonly") == [b"appendonly", b"no"]


def test_a_tcp_redis_listens_on_127_0_0_1_at_a_free_port(
    start_redis: Callable[..., PrivateRedis],
) -> None:
    redis = start_redis(tcp=True)
    assert redis.socket_path is None
    assert redis.url == f"redis://127.0.0.1:{redis.port}"
    with socket.create_connection(("127.0.0.1", redis.port), timeout=5) as sock:
        sock.sendall(b"PING\r\n")
        assert sock.recv(64) == b"+PONG\r\n"


def test_a_port_taken_before_redis_binds_it_is_given_up_for_another(
    start_redis: Callable[..., PrivateRedis], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race between free_port() and redis-server's bind(), made certain: the first
    port offered is held by a listening socket of ours, the next is the kernel's pick."""
    with socket.create_server(("127.0.0.1", 0)) as taken:
        offers = iter([taken.getsockname()[1]])
        real_free_port = launch_redis.free_port
        monkeypatch.setattr(
            launch_redis, "free_port", lambda: next(offers, None) or real_free_port()
        )
        redis = start_redis(tcp=True)
        assert redis.port != taken.getsockname()[1]
        assert "Address already in use" in redis.log()
        with redis.client() as client:
            assert client.command("PING") == b"PONG"


def test_restarted_on_its_unix_socket_it_is_a_fresh_redis(redis: PrivateRedis) -> None:
    url = redis.url
    with redis.client() as client:
        client.command("SET", "key", "value")
        redis.stop()
        # The old connection ends; a clean shutdown removes the socket file.
        with pytest.raises(ConnectionError):
            client.command("PING")
    assert redis.socket_path is not None
    assert not redis.socket_path.exists()
    redis.start()
    assert redis.url == url
    with redis.client() as client:
        # Nothing was saved, so nothing comes back.
        assert client.command("GET", "key") is None


def test_a_tcp_redis_restarts_on_the_same_port(start_redis: Callable[..., PrivateRedis]) -> None:
    redis = start_redis(tcp=True)
    url = redis.url
    redis.stop()
    redis.start()
    assert redis.url == url
    with redis.client() as client:
        assert client.command("PING") == b"PONG"


def test_a_restart_on_a_port_that_was_taken_meanwhile_fails_and_says_why(
    start_redis: Callable[..., PrivateRedis],
) -> None:
    redis = start_redis(tcp=True)
    redis.stop()
    with socket.create_server(("127.0.0.1", redis.port)), pytest.raises(RedisStartError) as error:
        redis.start()
    assert "Address already in use" in str(error.value)
    assert not redis.running


def test_killed_with_sigkill_it_leaves_its_socket_and_starts_again_on_it(
    redis: PrivateRedis,
) -> None:
    with redis.client() as client:
        client.command("PING")
        redis.kill()
        assert redis.process is not None
        assert redis.process.returncode == -9
        with pytest.raises(ConnectionError):
            client.command("PING")
    assert redis.socket_path is not None
    assert redis.socket_path.exists()  # Nobody removed it: Redis unlinks it when it restarts.
    redis.start()
    with redis.client() as client:
        assert client.command("PING") == b"PONG"


def test_a_frozen_redis_answers_nothing_until_thawed(redis: PrivateRedis) -> None:
    with redis.client(timeout=0.2) as client:
        redis.freeze()
        client.send("PING")
        with pytest.raises(TimeoutError):
            client.read()
        # The kernel still completes connections into the listen backlog.
        with redis.client(timeout=0.2) as other, pytest.raises(TimeoutError):
            other.command("PING")
        redis.thaw()
        client.sock.settimeout(5)
        assert client.read() == b"PONG"


def test_stop_kills_a_redis_that_does_not_exit_on_sigterm_within_its_bound(
    tmp_path: Path,
) -> None:
    """A stopped process (SIGSTOP) keeps SIGTERM pending; SIGKILL still ends it."""
    with RedisServer(tmp_path) as redis:
        os.kill(redis.pid, signal.SIGSTOP)
        started = time.monotonic()
        redis.stop(timeout=0.5)
        assert 0.5 <= time.monotonic() - started < 3
        assert redis.process is not None
        assert redis.process.returncode == -signal.SIGKILL


def test_a_frozen_private_redis_is_thawed_to_stop_cleanly(redis: PrivateRedis) -> None:
    redis.freeze()
    started = time.monotonic()
    redis.stop(timeout=5)
    assert time.monotonic() - started < 2
    assert redis.process is not None
    assert redis.process.returncode == 0


def test_debug_sleep_does_not_delay_a_shutdown(start_redis: Callable[..., PrivateRedis]) -> None:
    """DEBUG SLEEP is usleep() in Redis's one thread: SIGTERM interrupts it (EINTR)."""
    redis = start_redis(options=("--enable-debug-command", "local"))
    with redis.client() as sleeper, redis.client(timeout=0.2) as prober:
        sleeper.send("DEBUG", "SLEEP", "30")
        with pytest.raises(TimeoutError):
            prober.command("PING")  # Busy: the sleep has begun.
        started = time.monotonic()
        redis.stop(timeout=5)
        assert time.monotonic() - started < 2
    assert redis.process is not None
    assert redis.process.returncode == 0


def test_an_error_reply_is_raised_by_command_and_returned_by_read(redis: PrivateRedis) -> None:
    with redis.client() as client:
        with pytest.raises(hiredis.ReplyError, match="unknown command"):
            client.command("NO-SUCH-COMMAND")
        client.send_many([("SET", "n", "1"), ("INCR", "n"), ("LPUSH", "n", "x"), ("GET", "n")])
        assert client.read() == b"OK"
        assert client.read() == 2
        error = client.read()
        assert isinstance(error, hiredis.ReplyError)
        assert str(error).startswith("WRONGTYPE")
        assert client.read() == b"2"


def test_a_subscriber_reads_what_is_published_in_order(redis: PrivateRedis) -> None:
    with Subscriber(redis.address) as subscriber, redis.client() as publisher:
        subscriber.subscribe("news", "other")
        for n in range(100):
            assert publisher.command("PUBLISH", "news", f"item {n}") == 1
        assert [subscriber.message() for _ in range(100)] == [
            (b"news", f"item {n}".encode()) for n in range(100)
        ]
        [entry] = client_list(publisher, "TYPE", "pubsub")
        assert entry["sub"] == "2"
        assert "P" in entry["flags"]  # Subscribed; "U" for a unix socket beside it.


def test_a_redis_that_cannot_start_says_why_with_its_log(tmp_path: Path) -> None:
    with pytest.raises(RedisStartError, match="Bad directive"):
        PrivateRedis(tmp_path, options=("--no-such-option", "1"))


def test_a_socket_path_too_long_for_sun_path_is_refused(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 100)
    deep.mkdir()
    with pytest.raises(ValueError, match="longer than 107 bytes"):
        PrivateRedis(deep)


def test_a_client_to_a_redis_that_is_gone_fails_to_connect(redis: PrivateRedis) -> None:
    redis.kill()
    with pytest.raises(ConnectionRefusedError):
        RedisClient(redis.address)
