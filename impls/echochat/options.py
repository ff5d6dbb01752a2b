"""What every implementation is started with, and the one line each prints when it listens."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from echochat.core import Limits

Service = Literal["chat", "echo"]
EventLoop = Literal["asyncio", "uvloop"]


@dataclass(frozen=True, slots=True)
class ServerOptions:
    service: Service
    host: str
    port: int
    limits: Limits
    # Only for the implementations that run on an asyncio event loop.
    loop: EventLoop = "asyncio"
    # For tests only: a chat connection whose input contains these bytes
    # raises InjectedFault inside the server. None (the default) is inert.
    inject_fault: bytes | None = None
    # Chat: SO_SNDBUF for each connection; None leaves the kernel's autotuning.
    send_buffer: int | None = None


class Settable(Protocol):
    """A socket of any of the frameworks, as far as setting an option goes."""

    def setsockopt(self, level: int, option: int, value: int, /) -> None: ...


def set_send_buffer(sock: Settable, size: int | None) -> None:
    """Bound what the kernel holds for one client that does not read (``--send-buffer``).

    Left to autotuning, Linux lets one such socket hold about 3 MB on
    loopback (tests/test_soak.py measures it), bytes the SendQ never sees.
    """
    if size is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)


def asyncio_loop_factory(loop: EventLoop) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The event loop to run asyncio on: the standard one (None) or uvloop's."""
    if loop == "uvloop":
        import uvloop  # noqa: PLC0415  (an optional extra: imported only when asked for)

        return uvloop.new_event_loop
    return None


def announce_listening(address: tuple[str, int] | tuple[str, int, int, int]) -> None:
    """Print the contract's single stdout line, flushed, once the socket listens.

    Tests and scripts wait for this line and read the port from it (``--port 0``).
    """
    host, port = address[0], address[1]
    print(f"listening on {host}:{port}", flush=True)
