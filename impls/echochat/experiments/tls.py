"""tls: clients that send without reading, over plain TCP and over TLS, and where each echo server
holds what they sent.

Every echo server with backpressure stops reading once it has nowhere to put
the echo; what it took in until then sits in four places: the client's and
the server's kernel buffers (ss and ioctl say how much), and the server's user
space. Over TLS user space has more room: the SSL object's buffers, and on
asyncio the TLS transport's own write buffer, a layer above the socket
transport's. The user-space share is what is left of ``sent`` once the kernel
queues are counted; the RSS growth is measured beside it.
"""

from __future__ import annotations

import fcntl
import socket
import ssl
import struct
import subprocess
import tempfile
import termios
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from echochat.experiments import Settings
from echochat.experiments.common import MAIN, ON_UVLOOP, MiB, Report, progress
from echochat.launch import ServerUnderTest, throwaway_certificate
from echochat.registry import BY_NAME

NAME = "tls"
KiB = 1024
# One TLS record's worth of plaintext: a send cut short by the timeout loses none of the count.
RECORD = 16 * KiB
# No byte accepted for this long: the server stopped reading from this client.
STALL = 0.5
# A small receive buffer on the clients, so their kernel holds little of the echo.
CLIENT_RCVBUF = 4096
# Bounds on each client's flood, whatever the server does.
SEND_LIMIT = 64 * MiB
SEND_SECONDS = 20.0


@dataclass(frozen=True, slots=True)
class Held:
    """Where one server holds what ``clients`` non-reading clients sent, per client, in bytes."""

    label: str
    transport: str
    clients: int
    sent: float
    server_kernel: float
    client_kernel: float
    rss_growth: float

    @property
    def server_user_space(self) -> float:
        """What neither kernel holds: the server's own buffers (and its echo in flight)."""
        return self.sent - self.server_kernel - self.client_kernel


def flood(sock: socket.socket) -> int:
    """Send records without reading until sending stalls for STALL; return the bytes sent."""
    record = bytes(RECORD)
    sent, deadline = 0, time.monotonic() + SEND_SECONDS
    sock.settimeout(STALL)
    try:
        while sent < SEND_LIMIT and time.monotonic() < deadline:
            sent += sock.send(record)
    except TimeoutError:
        pass
    return sent


def kernel_queues(sock: socket.socket) -> int:
    """Bytes in this socket's kernel queues: unread plus unsent (SIOCINQ, SIOCOUTQ)."""
    unread = struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0" * 4))[0]
    unsent = struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0" * 4))[0]
    return int(unread + unsent)


def server_kernel_queues(port: int) -> int:
    """The Recv-Q and Send-Q of the server's connections on ``port``, summed (ss, iproute2)."""
    listing = subprocess.run(
        ["ss", "-tnH", "state", "established", f"( sport = :{port} )"],
        capture_output=True,
        text=True,
        check=True,
        timeout=10,
    ).stdout
    return sum(int(fields[0]) + int(fields[1]) for fields in map(str.split, listing.splitlines()))


def connect(port: int, tls: ssl.SSLContext | None) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, CLIENT_RCVBUF)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", port))
    return sock if tls is None else tls.wrap_socket(sock, server_hostname="localhost")


def warm_up(port: int, tls: ssl.SSLContext | None) -> None:
    """One connection that sends, reads back and closes, over the transport under test."""
    with connect(port, tls) as sock:
        sock.sendall(b"w" * RECORD)
        received = 0
        while received < RECORD:
            received += len(sock.recv(RECORD))


def measure(server: ServerUnderTest, tls: ssl.SSLContext | None, clients: int) -> Held:
    warm_up(server.port, tls)
    baseline = server.rss()
    socks = [connect(server.port, tls) for _ in range(clients)]
    try:
        sent = sum(flood(sock) for sock in socks)
        # The last client's stall: the server has stopped reading from all of them.
        return Held(
            label=server.label,
            transport="plain" if tls is None else "TLS",
            clients=clients,
            sent=sent / clients,
            server_kernel=server_kernel_queues(server.port) / clients,
            client_kernel=sum(map(kernel_queues, socks)) / clients,
            rss_growth=(server.rss() - baseline) / clients,
        )
    finally:
        for sock in socks:
            sock.close()


def run(settings: Settings) -> Report:
    clients = 2 if settings.quick else 8
    results: list[Held] = []
    with tempfile.TemporaryDirectory() as directory:
        cert, key = throwaway_certificate(Path(directory))
        client_context = ssl.create_default_context(cafile=str(cert))
        tls_options = ("--tls-cert", str(cert), "--tls-key", str(key))
        for impl, loop in [*MAIN, ("asyncio-protocol", "asyncio"), *ON_UVLOOP]:
            if not BY_NAME[impl].drain or not BY_NAME[impl].tls:
                # asyncio-nodrain holds everything (the memory experiment shows
                # it); asyncio-sockets has no TLS to compare with.
                continue
            for options, tls in (((), None), (tls_options, client_context)):
                with ServerUnderTest.echochat(impl, "echo", *options, loop=loop) as server:
                    results.append(measure(server, tls, clients))
                held = results[-1]
                progress(
                    NAME,
                    f"{held.label} {held.transport}: {held.sent / MiB:.1f} MiB per client, "
                    f"user space {held.server_user_space / KiB:.0f} KiB",
                )
    rows: list[list[object]] = [
        [
            held.label,
            held.transport,
            held.sent / MiB,
            held.client_kernel / KiB,
            held.server_kernel / KiB,
            held.server_user_space / KiB,
            held.rss_growth / KiB,
        ]
        for held in results
    ]
    raw = {f"{held.label} {held.transport}": asdict(held) for held in results}
    notes = [
        f"{clients} clients per server, each with SO_RCVBUF {CLIENT_RCVBUF}, sending "
        f"{RECORD // KiB} KiB at a time without reading until a send stalled for {STALL} s "
        "(the server stopped reading), one after the other; figures per client.",
        "client kernel = the client sockets' unread and unsent bytes (FIONREAD, SIOCOUTQ); "
        "server kernel = the server sockets' Recv-Q and Send-Q (ss); server user space = sent "
        "minus both (TLS adds ~0.2 % of framing to the kernel's share, which this ignores).",
        "RSS growth: the server's, after one warm-up connection over the same transport, "
        "divided by the clients; it includes allocator slack, so it can be below or above "
        "the user-space share.",
    ]
    return Report(
        name=NAME,
        title="Where a client that never reads is held, plain TCP and TLS (echo service)",
        columns=[
            "implementation",
            "transport",
            "sent MiB",
            "client kernel KiB",
            "server kernel KiB",
            "server user space KiB",
            "RSS growth KiB",
        ],
        rows=rows,
        raw=raw,
        notes=notes,
    )
