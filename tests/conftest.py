"""Fixtures that run every shared test against every implementation, as a real subprocess."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from irc import IrcClient
from servers import IMPLS, ServerProcess


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
def connect(chat_server: ServerProcess) -> Iterator[Callable[..., IrcClient]]:
    """Open clients to the shared chat server; all closed at the end of the test."""
    clients: list[IrcClient] = []

    def open_client(**kwargs: float | int) -> IrcClient:
        client = IrcClient(chat_server.port, **kwargs)  # type: ignore[arg-type]
        clients.append(client)
        return client

    yield open_client
    for client in clients:
        client.close()
