"""Two servers of the implementation under test on one Redis (``--redis``) are one network."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from echochat.registry import parse_configuration
from irc import IrcClient
from servers import PrivateRedis, ServerProcess, echochat

pytestmark = pytest.mark.skipif(
    shutil.which("redis-server") is None,
    reason="redis-server is not installed (Debian package redis-server)",
)


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    """A Redis of this test's own; asked for before start_server, so stopped after the servers."""
    with PrivateRedis(tmp_path) as redis:
        yield redis.url


def test_a_channel_and_a_private_message_cross_from_one_server_to_the_other(
    redis_url: str,
    start_server: Callable[..., ServerProcess],
    open_client: Callable[..., IrcClient],
) -> None:
    first = start_server("chat", "--redis", redis_url, "--server-name", "first.test")
    second = start_server("chat", "--redis", redis_url, "--server-name", "second.test")
    # The first waits for a snapshot that does not come (the network is empty),
    # the second takes the first's; from then on every line crosses Redis.
    for server in (first, second):
        server.wait_for_log("joined the network")
    alice = open_client(first.port)
    alice.register("alice")
    # Reads wait at most 5 s, under SILENCE (10 s): the QUIT at the end must
    # come from the first server's SPLIT, not from the second noticing its silence.
    bob = open_client(second.port, timeout=5)
    bob.register("bob")

    alice.join("#net")
    lines = bob.join("#net")
    assert ":second.test 353 bob = #net :@alice bob" in lines
    alice.expect(r":bob!u@127\.0\.0\.1 JOIN #net")

    alice.send("PRIVMSG #net :hello from the first server")
    bob.expect(r":alice!u@127\.0\.0\.1 PRIVMSG #net :hello from the first server")
    bob.send("PRIVMSG alice :hello from the second server")
    alice.expect(r":bob!u@127\.0\.0\.1 PRIVMSG alice :hello from the second server")

    # Both leave cleanly while Redis is up: each hands it its SPLIT first.
    first.stop()
    bob.expect(r":alice!u@127\.0\.0\.1 QUIT :\*\.net \*\.split")
    second.stop()


def test_a_name_in_use_is_refused_in_one_line_and_freed_by_a_graceful_stop(
    impl: str, redis_url: str, start_server: Callable[..., ServerProcess]
) -> None:
    first = start_server("chat", "--redis", redis_url, "--server-name", "taken.test")
    first.wait_for_log("joined the network")
    implementation, loop = parse_configuration(impl)
    options = ["--impl", implementation.name, "--loop", loop, "--host", "127.0.0.1"]
    options += ["--port", "0", "--redis", redis_url, "--server-name", "taken.test"]
    refused = echochat("serve", *options)
    assert refused.returncode == 2, refused
    *logged, last = refused.stderr.splitlines()
    assert last.startswith("echochat: cannot join the network: the server name 'taken.test'")
    assert not any("Traceback" in line or "ERROR" in line for line in logged), refused.stderr
    # Stopped gracefully, a server frees its name at once: started again at
    # once (as systemctl restart would), it is not refused.
    first.stop()
    again = start_server("chat", "--redis", redis_url, "--server-name", "taken.test")
    again.wait_for_log("joined the network")
    again.stop()
