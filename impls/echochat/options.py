"""What every implementation is started with, and the one line each prints when it listens."""

from __future__ import annotations

import resource
import select
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from echochat.core import Limits
from echochat.core.limits import DEFAULT_REGISTRATION_TIMEOUT
from echochat.core.redislink import RedisAddress
from echochat.registry import Backend, EventLoop

Service = Literal["chat", "echo"]

# The backlog every implementation asks for unless told otherwise: more than
# any kernel allows, so listen(2) cuts it to the system's maximum (Linux:
# net.core.somaxconn; "silently truncated", listen(2)). This is trio's choice
# (_compute_backlog, trio/_highlevel_open_tcp_listeners.py), capped at 0xFFFF
# because some kernels keep the backlog in 16 bits (golang/go#5030). It is not
# asyncio's: start_server() and create_server() default to 100
# (Lib/asyncio/base_events.py), which a connection storm overflows.
MAX_BACKLOG = 0xFFFF
# Descriptors the server needs besides one per client: standard streams, the
# event loop's selector and wake-up pipe, the listening sockets, a margin.
RESERVED_FILES = 64


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
    # listen(2)'s backlog: connections the kernel queues until the server
    # accepts them. The default asks for the most the kernel allows.
    backlog: int = MAX_BACKLOG
    # --tls-cert and --tls-key: the server speaks TLS on ``port``, or, with
    # ``tls_port`` too, on that port beside plain TCP on ``port``.
    tls: ssl.SSLContext | None = None
    tls_port: int | None = None
    # --redis: the Redis that joins this chat server to a network of them.
    redis: RedisAddress | None = None

    def listening_ports(self) -> tuple[tuple[int, ssl.SSLContext | None], ...]:
        """Each port to listen on, with the TLS context it speaks (None: plain TCP)."""
        if self.tls_port is None:
            return ((self.port, self.tls),)
        return ((self.port, None), (self.tls_port, self.tls))

    @property
    def handshake_timeout(self) -> float:
        """Seconds a client has for the TLS handshake, on either service.

        The registration timeout, which the handshake is the first part of
        (60 s when that is off): a client that stalls in it holds a
        connection and a task, as one that never registers does.
        """
        return self.limits.registration_timeout or DEFAULT_REGISTRATION_TIMEOUT


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


class HasFileno(Protocol):
    """A socket of any of the frameworks, as far as polling it goes."""

    def fileno(self) -> int: ...


def queue_empty(listener: HasFileno) -> bool:
    """True if no connection waits in a listening socket's accept queue (it is not readable).

    poll(2) rather than select(2) or epoll: it needs no descriptor of its own
    (it is asked while the process has none to spare) and takes any fd number.
    """
    poller = select.poll()
    poller.register(listener.fileno(), select.POLLIN)
    return not poller.poll(0)


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


def system_backlog_limit() -> int | None:
    """The kernel's cap on a listen backlog, where it can be read (Linux); else None."""
    try:
        return int(Path("/proc/sys/net/core/somaxconn").read_text())
    except (OSError, ValueError):
        return None


Address = tuple[str, int] | tuple[str, int, int, int]


def announce_listening(address: Address, tls_address: Address | None = None) -> None:
    """Print the contract's single stdout line, flushed, once the sockets listen.

    Tests and scripts wait for this line and read the port from it (``--port 0``):
    ``listening on HOST:PORT``, and with ``--tls-port`` ``, TLS on HOST:PORT`` after it.
    """
    line = f"listening on {address[0]}:{address[1]}"
    if tls_address is not None:
        line += f", TLS on {tls_address[0]}:{tls_address[1]}"
    print(line, flush=True)
