"""fairness: how long a small message waits while another connection keeps the server busy.

asyncio's ``StreamReader.read()`` returns without yielding while data is
buffered, and ``drain()`` returns without yielding below the high-water mark
(cpython#75279), so an asyncio echo loop can run several iterations before
another connection gets its turn; trio's ``send_all``/``receive_some`` always
checkpoint. Client A streams bulk data and reads the echo back; client B
pings and times each round trip, first alone (baseline), then beside A.
"""

from __future__ import annotations

import socket
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from echochat.experiments import Settings
from echochat.experiments.common import (
    MAIN,
    ON_UVLOOP,
    VARIANTS,
    MiB,
    Report,
    new_figure,
    progress,
    save_figure,
)
from echochat.launch import ServerUnderTest

NAME = "fairness"
PING = b"p" * 63 + b"\n"
PING_INTERVAL = 0.01
# How long B pings beside the bulk stream.
QUICK_DURATION, FULL_DURATION = 1.0, 5.0
BULK_CHUNK = 64 * 1024
# Far above any round trip seen here; a blocked client fails instead of hanging.
SOCKET_TIMEOUT = 5.0
# Lets A's stream reach its steady rate before B starts timing.
RAMP_UP = 0.1


@dataclass(frozen=True, slots=True)
class Latencies:
    """Round trips in milliseconds."""

    rtts_ms: list[float]

    @property
    def p50(self) -> float:
        return statistics.median(self.rtts_ms)

    @property
    def p99(self) -> float:
        return statistics.quantiles(self.rtts_ms, n=100, method="inclusive")[98]

    @property
    def max(self) -> float:
        return max(self.rtts_ms)


@dataclass(frozen=True, slots=True)
class Outcome:
    label: str
    baseline: Latencies
    loaded: Latencies
    bulk_mib_per_s: float


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=SOCKET_TIMEOUT)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def ping(port: int, duration: float) -> Latencies:
    """Client B: one PING every PING_INTERVAL (at once if the last was late), timed to its echo."""
    rtts: list[float] = []
    buffer = bytearray(len(PING))
    with connect(port) as sock:
        start = time.monotonic()
        due = start
        while due < start + duration:
            time.sleep(max(0.0, due - time.monotonic()))
            sent_at = time.perf_counter()
            sock.sendall(PING)
            received = 0
            while received < len(PING):
                n = sock.recv_into(memoryview(buffer)[received:])
                if n == 0:
                    raise ConnectionError("echo server closed the ping connection")
                received += n
            rtts.append((time.perf_counter() - sent_at) * 1000)
            due = max(due + PING_INTERVAL, time.monotonic())
    return Latencies(rtts)


class Bulk:
    """Client A: one thread sends 64 KiB writes, another reads the echo back and counts it.

    Threads with blocking sockets keep the client light: both spend their
    time in send/recv with the GIL released, so B's timing is barely held up.
    """

    def __init__(self, port: int) -> None:
        self.sock = connect(port)
        self.received = 0
        self.stopping = threading.Event()

    def send(self) -> None:
        chunk = bytes(BULK_CHUNK)
        while not self.stopping.is_set():
            self.sock.sendall(chunk)
        # The server echoes what it still holds, then closes: the reader's EOF.
        self.sock.shutdown(socket.SHUT_WR)

    def read(self) -> None:
        buffer = bytearray(4 * BULK_CHUNK)
        while n := self.sock.recv_into(buffer):
            self.received += n


def measure(server: ServerUnderTest, duration: float) -> Outcome:
    """B's round trips alone, then beside A; and A's echo throughput meanwhile."""
    # The baseline only gives a median, which settles in fewer pings.
    baseline = ping(server.port, duration / 3)
    bulk = Bulk(server.port)
    with bulk.sock, ThreadPoolExecutor(max_workers=2) as pool:
        sending, reading = pool.submit(bulk.send), pool.submit(bulk.read)
        try:
            time.sleep(RAMP_UP)
            before, started = bulk.received, time.monotonic()
            loaded = ping(server.port, duration)
            throughput = (bulk.received - before) / MiB / (time.monotonic() - started)
        finally:
            bulk.stopping.set()
            sending.result(SOCKET_TIMEOUT)
            reading.result(SOCKET_TIMEOUT)
    return Outcome(server.label, baseline, loaded, throughput)


def run(settings: Settings) -> Report:
    duration = QUICK_DURATION if settings.quick else FULL_DURATION
    outcomes: list[Outcome] = []
    for impl, loop in [*MAIN, *VARIANTS, *ON_UVLOOP]:
        with ServerUnderTest.echochat(impl, "echo", loop=loop) as server:
            server.warm_up()
            progress(NAME, f"{server.label}: pings alone, then beside a bulk stream")
            outcomes.append(measure(server, duration))
    plot = plot_latencies(outcomes, settings.out)
    notes = [
        "Each server was warmed up first (one connect/send/read/close). B sends 64 bytes every "
        f"{PING_INTERVAL * 1000:.0f} ms and times the echo; A sends {BULK_CHUNK // 1024} KiB "
        "writes and reads the echo in two threads. Latencies in ms.",
        "Client and server share this machine's 2 cores: absolute times are noisy; the ratios "
        "between implementations within one run are the result.",
        f"plot: {plot}",
    ]
    return Report(
        name=NAME,
        title="Ping round trips beside a bulk echo stream, per implementation (echo service)",
        columns=[
            "implementation",
            "baseline p50 ms",
            "loaded p50 ms",
            "loaded p99 ms",
            "loaded max ms",
            "bulk MiB/s",
        ],
        rows=[
            [
                outcome.label,
                outcome.baseline.p50,
                outcome.loaded.p50,
                outcome.loaded.p99,
                outcome.loaded.max,
                outcome.bulk_mib_per_s,
            ]
            for outcome in outcomes
        ],
        raw={
            outcome.label: {
                "baseline_rtt_ms": outcome.baseline.rtts_ms,
                "loaded_rtt_ms": outcome.loaded.rtts_ms,
                "bulk_mib_per_s": outcome.bulk_mib_per_s,
            }
            for outcome in outcomes
        },
        notes=notes,
    )


def plot_latencies(outcomes: list[Outcome], out: Path) -> Path:
    figure = new_figure("Ping round trip beside a bulk echo stream")
    axes = figure.subplots()
    # Loaded p50 next to p99: the p99 of a few hundred pings on 2 shared
    # cores is mostly scheduler noise, the median shows the steady cost.
    series = {
        "p50 alone (baseline)": [outcome.baseline.p50 for outcome in outcomes],
        "p50 beside the bulk stream": [outcome.loaded.p50 for outcome in outcomes],
        "p99 beside the bulk stream": [outcome.loaded.p99 for outcome in outcomes],
    }
    width = 0.8 / len(series)
    for n, (label, values) in enumerate(series.items()):
        offset = (n - (len(series) - 1) / 2) * width
        axes.bar([x + offset for x in range(len(outcomes))], values, width, label=label)
    axes.set_xticks(
        list(range(len(outcomes))),
        [outcome.label for outcome in outcomes],
        rotation=30,
        ha="right",
    )
    # Log scale: medians near 0.2 ms and tails of tens of ms on one chart.
    axes.set_yscale("log")
    axes.set_ylabel("round trip (ms, log scale)")
    axes.grid(True, axis="y", which="both", alpha=0.3)
    axes.legend(fontsize="small")
    return save_figure(figure, out, NAME)
