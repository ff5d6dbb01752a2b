"""Fixtures that run every shared test against every implementation, as a real subprocess.

And the one rule pytest-xdist's workers follow between them: a test marked ``alone``
runs while no other test of the run does.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Callable, Generator, Iterator
from pathlib import Path

import pytest

from irc import IrcClient
from redisserver import PrivateRedis
from servers import IMPLS, ServerProcess


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item) -> Generator[None, object, object]:
    """Under pytest-xdist, hold the run's suite lock through setup, call and teardown.

    Outside pytest-timeout's timer (tryfirst: the outer wrapper), so waiting for
    the lock does not count against the test's own time; every holder is bounded
    by its timeout.
    """
    basetemp = item.config.option.basetemp
    if "PYTEST_XDIST_WORKER" not in os.environ or not basetemp:
        return (yield)
    # A worker's basetemp is a directory in the run's own, which all workers share.
    alone = item.get_closest_marker("alone") is not None
    with suite_lock(Path(basetemp).parent, alone=alone):
        return (yield)


@contextlib.contextmanager
def suite_lock(directory: Path, *, alone: bool) -> Iterator[None]:
    """Shared for most tests, exclusive for one marked ``alone``; a waiting ``alone`` goes first.

    Every test passes the gate on its way in; one that runs alone holds it,
    so tests that come after it wait there while the ones already running finish.
    Closing a file releases its lock.
    """
    with (directory / "tests.gate").open("a") as gate, (directory / "tests.lock").open("a") as lock:
        fcntl.flock(gate, fcntl.LOCK_EX)
        fcntl.flock(lock, fcntl.LOCK_EX if alone else fcntl.LOCK_SH)
        if not alone:
            fcntl.flock(gate, fcntl.LOCK_UN)
        yield


@pytest.fixture(scope="module", params=IMPLS)
def impl(request: pytest.FixtureRequest) -> str:
    """The implementation under test; the pytest id names it, e.g. ``[anyio-trio]``."""
    return str(request.param)


@pytest.fixture(scope="module")
def chat_server(impl: str) -> Iterator[ServerProcess]:
    """One chat server per implementation and test module, shared by tests that use unique nicks."""
    with ServerProcess(impl, "chat") as server:
        yield server


@pytest.fixture
def start_server(impl: str) -> Iterator[Callable[..., ServerProcess]]:
    """Start a server of the implementation under test with its own options; stopped at the end."""
    started: list[ServerProcess] = []

    def start(service: str = "chat", *options: str) -> ServerProcess:
        server = ServerProcess(impl, service, *options)
        started.append(server)
        return server

    yield start
    for server in started:
        if server.process.poll() is None:
            server.stop()


@pytest.fixture
def open_client() -> Iterator[Callable[..., IrcClient]]:
    """Open IRC clients to any port: ``open_client(port, timeout=..., rcvbuf=...)``; all
    closed at the end."""
    clients: list[IrcClient] = []

    def open_one(port: int, timeout: float = 10.0, rcvbuf: int | None = None) -> IrcClient:
        client = IrcClient(port, timeout, rcvbuf)
        clients.append(client)
        return client

    yield open_one
    for client in clients:
        client.close()


@pytest.fixture
def connect(
    chat_server: ServerProcess, open_client: Callable[..., IrcClient]
) -> Callable[..., IrcClient]:
    """Open clients to the shared chat server; all closed at the end of the test."""

    def open_to_shared_server(**options: int) -> IrcClient:
        return open_client(chat_server.port, **options)

    return open_to_shared_server


@pytest.fixture
def start_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., PrivateRedis]]:
    """Start private Redis servers: ``start_redis(tcp=False, options=())``; stopped at the end.

    Each in a directory of its own, short enough for a unix socket's path.
    """
    with contextlib.ExitStack() as servers:
        # ExitStack stops every one, even if stopping another failed its checks.

        def start(*, tcp: bool = False, options: tuple[str, ...] = ()) -> PrivateRedis:
            server = PrivateRedis(tmp_path_factory.mktemp("redis"), tcp=tcp, options=options)
            return servers.enter_context(server)

        yield start


@pytest.fixture
def redis(start_redis: Callable[..., PrivateRedis]) -> PrivateRedis:
    """A private Redis for this test on a unix socket; ``redis.url`` is its unix:// URL."""
    return start_redis()
