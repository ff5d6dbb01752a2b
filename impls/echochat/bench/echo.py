"""echo: closed-loop request/response load on an echo server, in the style of vmbench's echo_client.

Each of CONCURRENCY connections sends one message of SIZE bytes, waits for the
whole echo, checks it byte for byte and sends the next, for a fixed time. One
client process drives every connection with non-blocking sockets and a
selector; its CPU share (CPU seconds / wall time) is reported with every run,
because a client at 100 % of one core is the bottleneck, not the server.
This module's client is the one to read; ``native.py`` runs the same loop in
C (``epoll_client.c``), which the matrix uses when gcc is there, so that the
fastest servers are not limited by a Python client.

Each row of the matrix pairs echochat's echo service with a minimal echo
server on the same framework (``echochat.bench.minimal``), so the difference
is what echochat's architecture costs; a C epoll server gives the machine's
ceiling. TLS rows do the same over TLS, for every implementation that serves
it, beside the plain rows: only the C client loads them, since a Python
client decrypting and encrypting every message would be slower than the
servers it measures.
"""

from __future__ import annotations

import atexit
import contextlib
import selectors
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache, partial
from pathlib import Path

import psutil

from echochat.bench.cserver import build_epoll_echo
from echochat.experiments.common import MAIN, ON_UVLOOP, VARIANTS, MiB, progress, quantile
from echochat.launch import ServerUnderTest, echochat_command, throwaway_certificate
from echochat.registry import BY_NAME, EventLoop, configuration_id

NAME = "echo"
KiB = 1024
SIZES = (1 * KiB, 10 * KiB, 100 * KiB)
DEFAULT_CONCURRENCY = 10
DEFAULT_DURATION = 3.0
RSS_INTERVAL = 0.1
# After the measured window no new message starts; the ones in flight get
# this long to come back whole (they are checked, not counted).
FINISH_GRACE = 5.0
CONNECT_TIMEOUT = 10.0
# Message n of a connection starts at offset (n * STEP + connection) % PERIOD
# of a pattern repeating every PERIOD bytes; PERIOD is prime, so consecutive
# messages differ and a stale, repeated or shifted echo never matches.
PERIOD = 251
STEP = 7
BUSY_FIELDS = ("user", "nice", "system", "irq", "softirq")

Start = Callable[[], ServerUnderTest]
# A load generator: (server, size, concurrency, duration) -> one run's figures.
LoadGenerator = Callable[[ServerUnderTest, int, int, float], "EchoResult"]


class EchoError(Exception):
    """The server broke the echo: different bytes, a closed connection, or no answer."""


@dataclass(slots=True)
class EchoResult:
    """One run against one server; ``dataclasses.asdict`` gives its JSON."""

    label: str
    client: str  # the load generator: "python" (this module) or "C" (native.py)
    size: int
    concurrency: int
    seconds: float  # the measured window
    messages: int  # echoes completed within the window
    verified: int  # echoes compared byte for byte: all of the above, and those in flight at the end
    msgs_per_s: float
    mib_per_s: float  # echoed payload, one direction
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    server_cpu_s: float
    server_cpu_s_per_msg: float
    peak_rss_mib: float
    rss_samples: int
    client_cpu_share: float  # of one core; near 1.0, the client limits the figures
    # The machine's busy CPU during the window beyond client and server, in
    # cores: about 0 on a quiet machine (the kernel charges most loopback work
    # to them); more means something else ran and the run is suspect.
    other_busy_cores: float
    # CPU the hypervisor gave to other guests while this one wanted it, in
    # cores (Linux "steal"): on a shared virtual machine, the larger noise.
    steal_cores: float
    # The TLS version and cipher the client spoke, "" on plain TCP.
    tls: str = ""


class _Connection:
    """One client connection: the message being sent, and where its echo lands."""

    __slots__ = ("echo", "expected", "index", "outgoing", "received", "sent", "sock", "started")

    def __init__(self, sock: socket.socket, index: int, size: int) -> None:
        self.sock = sock
        self.index = index
        self.echo = bytearray(size)
        self.expected = memoryview(b"")
        self.outgoing = memoryview(b"")
        self.received = 0
        self.sent = 0  # messages started
        self.started = 0.0


def run_echo(
    server: ServerUnderTest,
    size: int,
    concurrency: int = DEFAULT_CONCURRENCY,
    duration: float = DEFAULT_DURATION,
) -> EchoResult:
    """Measure one server (started and warmed up by the caller) for ``duration`` seconds."""
    if size < 1 or concurrency < 1 or duration <= 0:
        raise ValueError("size and concurrency must be positive, and so must duration")
    if server.ca is not None:
        raise EchoError(f"{server.label}: this client speaks plain TCP; TLS needs the C client")
    pattern = memoryview((bytes(range(PERIOD)) * (size // PERIOD + 2))[: size + PERIOD])
    selector = selectors.DefaultSelector()
    connections: list[_Connection] = []
    try:
        for index in range(concurrency):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=CONNECT_TIMEOUT)
            # The client must not hold back the tail of a message (Nagle) while
            # it waits for an ACK that delayed ACKs postpone; every server
            # under test sets TCP_NODELAY on its side too.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setblocking(False)
            connections.append(_Connection(sock, index, size))
            selector.register(sock, selectors.EVENT_READ, connections[-1])
        return _measure(
            server,
            size=size,
            duration=duration,
            pattern=pattern,
            selector=selector,
            connections=connections,
        )
    finally:
        selector.close()
        for connection in connections:
            connection.sock.close()


def _measure(
    server: ServerUnderTest,
    *,
    size: int,
    duration: float,
    pattern: memoryview,
    selector: selectors.BaseSelector,
    connections: list[_Connection],
) -> EchoResult:
    label = server.label
    latencies: list[float] = []
    peak_rss, rss_samples = server.rss(), 1
    server_cpu, client_cpu = server.cpu_seconds(), time.process_time()
    machine_cpu, steal = machine_cpu_seconds()
    start = time.perf_counter()
    deadline, next_sample = start + duration, start + RSS_INTERVAL
    for connection in connections:
        _send_next(connection, pattern, selector, label)
    # The window: each echo that completes is counted and the next message follows.
    while (now := time.perf_counter()) < deadline:
        if now >= next_sample:
            peak_rss, rss_samples = max(peak_rss, server.rss()), rss_samples + 1
            next_sample = now + RSS_INTERVAL
        for connection in _completed(selector, min(deadline, next_sample) - now, label):
            latencies.append(time.perf_counter() - connection.started)
            _send_next(connection, pattern, selector, label)
    elapsed = time.perf_counter() - start
    server_cpu = server.cpu_seconds() - server_cpu
    client_cpu = time.process_time() - client_cpu
    machine_cpu_now, steal_now = machine_cpu_seconds()
    machine_cpu, steal = machine_cpu_now - machine_cpu, steal_now - steal
    # Then the echoes in flight are checked too, not counted, within FINISH_GRACE.
    in_flight, finish = len(connections), time.perf_counter() + FINISH_GRACE
    while in_flight and (now := time.perf_counter()) < finish:
        for connection in _completed(selector, finish - now, label):
            # Done: whatever else comes is for _expect_clean_close to find.
            selector.unregister(connection.sock)
            in_flight -= 1
    if in_flight:
        raise EchoError(f"{label}: {in_flight} echoes incomplete after {FINISH_GRACE} s")
    _expect_clean_close(connections, label)
    peak_rss, rss_samples = max(peak_rss, server.rss()), rss_samples + 1
    messages = len(latencies)
    if messages == 0:
        raise EchoError(f"{label}: no echo completed in {duration} s")
    latencies.sort()
    return EchoResult(
        label=label,
        client="python",
        size=size,
        concurrency=len(connections),
        seconds=elapsed,
        messages=messages,
        verified=messages + len(connections),
        msgs_per_s=messages / elapsed,
        mib_per_s=messages * size / MiB / elapsed,
        p50_ms=quantile(latencies, 0.50) * 1000,
        p90_ms=quantile(latencies, 0.90) * 1000,
        p99_ms=quantile(latencies, 0.99) * 1000,
        max_ms=latencies[-1] * 1000,
        server_cpu_s=server_cpu,
        server_cpu_s_per_msg=server_cpu / messages,
        peak_rss_mib=peak_rss / MiB,
        rss_samples=rss_samples,
        client_cpu_share=client_cpu / elapsed,
        other_busy_cores=(machine_cpu - client_cpu - server_cpu) / elapsed,
        steal_cores=steal / elapsed,
    )


def _completed(selector: selectors.BaseSelector, timeout: float, label: str) -> list[_Connection]:
    """Wait up to ``timeout`` for readiness, move bytes, and return the echoes now complete."""
    completed = []
    for key, events in selector.select(timeout):
        connection: _Connection = key.data
        if events & selectors.EVENT_WRITE:
            _send_more(connection, selector, label)
        if events & selectors.EVENT_READ and _receive(connection, label):
            completed.append(connection)
    return completed


def _send_next(
    connection: _Connection, pattern: memoryview, selector: selectors.BaseSelector, label: str
) -> None:
    size = len(connection.echo)
    offset = (connection.sent * STEP + connection.index) % PERIOD
    connection.expected = connection.outgoing = pattern[offset : offset + size]
    connection.received = 0
    connection.sent += 1
    connection.started = time.perf_counter()
    _send_more(connection, selector, label, registered_for_write=False)


def _send_more(
    connection: _Connection,
    selector: selectors.BaseSelector,
    label: str,
    registered_for_write: bool = True,
) -> None:
    """Send what the socket takes; wait for it to be writable only while some is left."""
    try:
        sent = connection.sock.send(connection.outgoing)
    except BlockingIOError:
        sent = 0
    except OSError as error:
        raise EchoError(f"{label}: connection {connection.index} failed: {error!r}") from error
    connection.outgoing = connection.outgoing[sent:]
    # The echo keeps coming back while a large message is still going out,
    # so reading stays on throughout, or both sides could fill up and stall.
    if connection.outgoing and not registered_for_write:
        events = selectors.EVENT_READ | selectors.EVENT_WRITE
        selector.modify(connection.sock, events, connection)
    elif not connection.outgoing and registered_for_write:
        selector.modify(connection.sock, selectors.EVENT_READ, connection)


def _receive(connection: _Connection, label: str) -> bool:
    """Read what has arrived of the echo; True once it is complete and identical."""
    try:
        # Into the rest of this message's buffer only: any extra byte would be
        # read as the next message's start and fail its comparison.
        count = connection.sock.recv_into(memoryview(connection.echo)[connection.received :])
    except BlockingIOError:
        return False
    except OSError as error:
        raise EchoError(f"{label}: connection {connection.index} failed: {error!r}") from error
    if count == 0:
        raise EchoError(f"{label}: connection {connection.index} closed mid-message")
    connection.received += count
    if connection.received < len(connection.echo):
        return False
    if connection.echo != connection.expected:
        raise EchoError(f"{label}: connection {connection.index} got different bytes back")
    return True


def _expect_clean_close(connections: list[_Connection], label: str) -> None:
    """Send EOF on each connection and expect EOF back with no byte more than was echoed."""
    for connection in connections:
        connection.sock.settimeout(FINISH_GRACE)
        try:
            connection.sock.shutdown(socket.SHUT_WR)
            extra = connection.sock.recv(1)
        except OSError as error:
            raise EchoError(f"{label}: connection {connection.index} at EOF: {error!r}") from error
        if extra:
            raise EchoError(f"{label}: connection {connection.index} got bytes nobody sent")


def machine_cpu_seconds() -> tuple[float, float]:
    """CPU seconds the whole machine has spent working, and had stolen, since boot.

    Named fields, not the sum of all: on Linux guest time is already counted
    in user time, and idle, iowait and steal are not work done here.
    """
    times = psutil.cpu_times()
    busy = sum(float(getattr(times, name, 0.0)) for name in BUSY_FIELDS)
    return busy, float(getattr(times, "steal", 0.0))


# --- What the matrix runs -------------------------------------------------


@dataclass(frozen=True, slots=True)
class Minimal:
    """A minimal reference server: its module in echochat.bench.minimal and its options."""

    label: str
    module: str
    options: tuple[str, ...] = ()
    # Serves TLS with --tls-cert and --tls-key (asyncio's socket API cannot).
    tls: bool = True


# The minimal server of each echochat implementation's framework: the
# teaching variants are compared with what they vary (Streams, Protocol, sockets).
MINIMAL = {
    "asyncio": Minimal("minimal asyncio-streams", "asyncio_streams"),
    "asyncio-nodrain": Minimal("minimal asyncio-streams", "asyncio_streams"),
    "asyncio-protocol": Minimal("minimal asyncio-protocol", "asyncio_protocol"),
    "asyncio-sockets": Minimal("minimal asyncio-sockets", "asyncio_sockets", tls=False),
    "trio": Minimal("minimal trio", "trio_echo"),
    "anyio-asyncio": Minimal("minimal anyio-asyncio", "anyio_echo", ("--backend", "asyncio")),
    "anyio-trio": Minimal("minimal anyio-trio", "anyio_echo", ("--backend", "trio")),
}
CEILING_LABEL = "C epoll"
# How a server over TLS is labelled: its plain label, then this.
TLS_SUFFIX = " TLS"


@cache
def bench_certificate() -> tuple[Path, Path]:
    """One certificate and key for every TLS server of this process, removed at exit."""
    directory = Path(tempfile.mkdtemp(prefix="echochat-bench-tls-"))
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    return throwaway_certificate(directory)


def tls_options() -> tuple[tuple[str, ...], Path]:
    """The server options that turn TLS on (bench_certificate's), and the file clients check."""
    cert, key = bench_certificate()
    return ("--tls-cert", str(cert), "--tls-key", str(key)), cert


def start_minimal(
    minimal: Minimal, loop: EventLoop = "asyncio", tls: bool = False
) -> ServerUnderTest:
    command = [sys.executable, "-m", f"echochat.bench.minimal.{minimal.module}", "--port", "0"]
    command += minimal.options
    label = minimal.label if loop == "asyncio" else f"{minimal.label}+{loop}"
    if loop != "asyncio":
        command += ["--loop", loop]
    if not tls:
        return ServerUnderTest(label, command)
    options, ca = tls_options()
    return ServerUnderTest(label + TLS_SUFFIX, [*command, *options], ca=ca)


def start_echochat(impl: str, loop: EventLoop = "asyncio", tls: bool = False) -> ServerUnderTest:
    if not tls:
        return ServerUnderTest.echochat(impl, "echo", loop=loop)
    # --tls-cert and --tls-key without --tls-port: TLS on the one port.
    options, ca = tls_options()
    command = echochat_command(impl, "echo", *options, loop=loop)
    return ServerUnderTest(configuration_id(BY_NAME[impl], loop) + TLS_SUFFIX, command, ca=ca)


def start_ceiling(binary: Path) -> ServerUnderTest:
    return ServerUnderTest(CEILING_LABEL, [str(binary), "--port", "0"])


@dataclass(frozen=True, slots=True)
class EchoTarget:
    """One row of the matrix: echochat's echo service and the minimal server it is compared with."""

    label: str  # echochat's, e.g. "asyncio" or "asyncio+uvloop"
    echochat: Start
    minimal: Start


@dataclass(frozen=True, slots=True)
class EchoTargets:
    rows: list[EchoTarget]
    ceiling: Start | None  # the C server; None when it could not be built (see notes)
    notes: list[str]


def echo_targets(tls: bool = False) -> EchoTargets:
    """Every row: MAIN, VARIANTS and ON_UVLOOP, and the C ceiling (compiled here if need be).

    With ``tls``, then the same rows over TLS, for each implementation that serves it.
    """
    configurations = [*MAIN, *VARIANTS, *ON_UVLOOP]
    rows = [
        EchoTarget(
            configuration_id(BY_NAME[impl], loop),
            partial(start_echochat, impl, loop),
            partial(start_minimal, MINIMAL[impl], loop),
        )
        for impl, loop in configurations
    ]
    if tls:
        rows += [
            EchoTarget(
                configuration_id(BY_NAME[impl], loop) + TLS_SUFFIX,
                partial(start_echochat, impl, loop, tls=True),
                partial(start_minimal, MINIMAL[impl], loop, tls=True),
            )
            for impl, loop in configurations
            if BY_NAME[impl].tls
        ]
    build = build_epoll_echo()
    if build.binary is None:
        return EchoTargets(rows, None, [f"{CEILING_LABEL} ceiling skipped: {build.reason}"])
    return EchoTargets(rows, partial(start_ceiling, build.binary), [])


def report_progress(result: EchoResult) -> None:
    progress(NAME, describe(result))


def describe(result: EchoResult) -> str:
    """One run in one line, as the progress output shows it."""
    return (
        f"{result.label} {result.size // KiB} KiB: {result.msgs_per_s:,.0f} msgs/s, "
        f"p99 {result.p99_ms:.2f} ms, server {result.server_cpu_s_per_msg * 1e6:.0f} µs CPU/msg, "
        f"{result.client} client at {result.client_cpu_share:.0%} of a core"
    )


# How long the load itself warms each server before it is measured.
WARM_SECONDS = 0.2


def warm_with_load(
    server: ServerUnderTest, client: LoadGenerator, size: int, concurrency: int
) -> None:
    """Warm ``server`` the same way as every other: the load itself, briefly, then an EOF.

    A cold asyncio server reads into a 256 KiB buffer that costs an mmap per
    read until a freed mapped buffer raises glibc's threshold, and only a read
    of EOF frees one whole (docs/performance.md, the mmap trap). One small
    exchange is not enough: its buffer may come from a free block that the
    server's start left in the heap, and freeing that raises nothing. Under the
    load the reads are mapped, so the EOF that ends each connection raises it.
    """
    client(server, size, concurrency, WARM_SECONDS)
    # And one connection whose EOF the server surely reads: a load connection
    # closed while the server had paused reading it (flow control) frees no
    # read buffer, and the minimal Streams server was seen still mapping
    # memory for a third of its messages after the load alone.
    server.warm_up()


def measure(
    starts: Sequence[Start],
    sizes: Sequence[int] = SIZES,
    concurrency: int = DEFAULT_CONCURRENCY,
    duration: float = DEFAULT_DURATION,
    *,
    client: LoadGenerator = run_echo,
    report: Callable[[EchoResult], None] = report_progress,
) -> list[EchoResult]:
    """Start the servers, warm each the same way, then run each size on each, interleaved.

    Interleaving (and alternating which server goes first) spreads slow
    drifts of the machine evenly over the servers compared; a run that
    another process or the hypervisor disturbed still shows it in its
    ``other_busy_cores`` and ``steal_cores``.
    """
    results: list[EchoResult] = []
    servers: list[ServerUnderTest] = []
    # Each server is stopped on the way out, even when another's stop() fails.
    with contextlib.ExitStack() as stack:
        for start in starts:
            servers.append(stack.enter_context(start()))
            warm_with_load(servers[-1], client, max(sizes), concurrency)
        for n, size in enumerate(sizes):
            for server in servers if n % 2 == 0 else servers[::-1]:
                result = client(server, size, concurrency, duration)
                report(result)
                results.append(result)
    return results
