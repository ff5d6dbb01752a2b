"""What every implementation is started with, and the one line each prints when it listens."""

from __future__ import annotations

import resource
import socket
from dataclasses import dataclass
from typing import Literal, Protocol

from echochat.core import Limits
from echochat.registry import Backend, EventLoop

Service = Literal["chat", "echo"]


@dataclass(frozen=True, slots=True)
class ServerOptions:
    service: Service
    host: str
    port: int
    limits: Limits
    # Only for the implementations that run on an asyncio event loop.
    loop: EventLoop = "asyncio"
    # Only for anyio, the one adapter that runs on either framework's loop.
    backend: Backend = "asyncio"
    # Only for asyncio Streams: False is the asyncio-nodrain teaching variant,
    # which leaves drain() out to show what that costs. Never turn it off.
    drain: bool = True
    # For tests only: a chat connection whose input contains these bytes
    # raises InjectedFaultError inside the server. None (the default) is inert.
    inject_fault: bytes | None = None
    # Chat: SO_SNDBUF for each connection; None leaves the kernel's autotuning.
    send_buffer: int | None = None


class Settable(Protocol):
    """A socket of any of the frameworks, as far as setting an option goes."""

    def setsockopt(self, level: int, option: int, value: int, /) -> None: ...


def set_send_buffer(sock: Settable, size: int | None) -> None:
    """Bound what the kernel holds for one client that does not read (``--send-buffer``).

    Left to autotuning, Linux lets one such socket hold about 3 MB on
    loopback (tests/contract/test_soak.py measures it), bytes the SendQ never sees.
    """
    if size is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)


def allow_open_files(wanted: int) -> int:
    """Raise the soft open-files limit towards ``wanted``, as far as the hard limit allows.

    Returns the soft limit now in force (``wanted`` or more when it was
    unlimited or high enough already); the caller decides what a shortfall means.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return wanted if soft == resource.RLIM_INFINITY else soft
    new_soft = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (new_soft, hard))
    return new_soft


def announce_listening(address: tuple[str, int] | tuple[str, int, int, int]) -> None:
    """Print the contract's single stdout line, flushed, once the socket listens.

    Tests and scripts wait for this line and read the port from it (``--port 0``).
    """
    host, port = address[0], address[1]
    print(f"listening on {host}:{port}", flush=True)
