"""storm: connections opened and closed as fast as possible, while registered clients PING.

``echochat bench storm`` runs it against every implementation (and the
asyncio one once more with ``--backlog 100``, asyncio's own default): for
each, STORM_PROCESSES client processes each run STORM_WORKERS loops of
connect, ``QUIT``, read the server's ``ERROR`` line, close, for a fixed time;
meanwhile PINGERS registered clients in this process send ``PING`` in turn,
and every round trip is timed. It reports completed connections per second,
the connections that failed, and the PING p50 and p99. Everything runs on
127.0.0.1 and is bounded in time and count; the clients share the machine's
cores with the server, so the figures compare implementations on one
machine, not servers in general.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from echochat.experiments import Settings
from echochat.experiments.common import MAIN, ON_UVLOOP, VARIANTS, Report, progress, quantile
from echochat.launch import ServerUnderTest
from echochat.registry import BY_NAME, EventLoop, configuration_id

NAME = "storm"
DEFAULT_OUT = Path("build")
STORM_PROCESSES = 2
STORM_WORKERS = 64  # concurrent connect/close loops per process
STORM_SECONDS = 5.0
QUICK_SECONDS = 1.0
# Per process and run, whatever the speed: under the ~28k ephemeral ports a
# run can use on one server port while the closed ones sit in TIME_WAIT.
STORM_MAX = 12_000
PINGERS = 4
PING_GAP = 0.01  # between one client's PONG and its next PING
TIMEOUT = 2.0  # for each connect and each reply in the storm


@dataclass(slots=True)
class StormResult:
    label: str
    seconds: float
    completed: int
    failed: dict[str, int]
    pings: int
    ping_p50_ms: float
    ping_p99_ms: float
    ping_max_ms: float
    completed_per_s: float = field(init=False)

    def __post_init__(self) -> None:
        self.completed_per_s = self.completed / self.seconds


# Rows: every implementation, then asyncio with its own default backlog.
TARGETS: list[tuple[str, EventLoop, tuple[str, ...]]] = [
    *((impl, loop, ()) for impl, loop in MAIN + VARIANTS + ON_UVLOOP if BY_NAME[impl].drain),
    ("asyncio", "asyncio", ("--backlog", "100")),
]


def run(settings: Settings) -> Report:
    seconds = QUICK_SECONDS if settings.quick else STORM_SECONDS
    # Other work on the machine shows here: figures from a busy machine are only indicative.
    load_before = os.getloadavg()[0]
    results = []
    for impl, loop, options in TARGETS:
        label = " ".join([configuration_id(BY_NAME[impl], loop), *options])
        progress(NAME, f"{label}: {seconds:g} s")
        with ServerUnderTest.echochat(impl, "chat", *options, loop=loop) as server:
            server.warm_up()
            results.append(measure(server.port, label, seconds))
    return Report(
        name=NAME,
        title=f"Connection storm: {STORM_PROCESSES} processes x {STORM_WORKERS} "
        f"connect/QUIT/close loops for {seconds:g} s, {PINGERS} registered clients PINGing",
        columns=["server", "connections/s", "failed", "PING p50 ms", "PING p99 ms"],
        rows=[
            [
                result.label,
                round(result.completed_per_s),
                sum(result.failed.values()),
                round(result.ping_p50_ms, 2),
                round(result.ping_p99_ms, 2),
            ]
            for result in results
        ],
        raw={
            "results": [asdict(result) for result in results],
            "load_average_1min": {"before": load_before, "after": os.getloadavg()[0]},
        },
        notes=["Clients and server share the machine's cores; absolute numbers are noisy."],
    )


def measure(port: int, label: str, seconds: float) -> StormResult:
    context = multiprocessing.get_context("spawn")
    # The PINGs start when every storm process is ready to start too.
    ready = context.Barrier(STORM_PROCESSES + 1)
    results: multiprocessing.Queue[dict[str, int]] = context.Queue()
    storms = [
        context.Process(target=storm_process, args=(port, seconds, ready, results))
        for _ in range(STORM_PROCESSES)
    ]
    for process in storms:
        process.start()
    try:
        ready.wait(timeout=60)
        rtts = asyncio.run(ping_while(port, seconds))
        counts = [results.get(timeout=seconds + 60) for _ in storms]
    finally:
        for process in storms:
            process.join(timeout=10)
            process.kill()
    rtts.sort()
    failed: dict[str, int] = {}
    for count in counts:
        for outcome, number in count.items():
            if outcome != "completed":
                failed[outcome] = failed.get(outcome, 0) + number
    return StormResult(
        label=label,
        seconds=seconds,
        completed=sum(count["completed"] for count in counts),
        failed=failed,
        pings=len(rtts),
        ping_p50_ms=quantile(rtts, 0.5) * 1000,
        ping_p99_ms=quantile(rtts, 0.99) * 1000,
        ping_max_ms=rtts[-1] * 1000,
    )


# What each storm connection sends, and how the line it gets back must start:
# chat's QUIT and ERROR, or (bench layers) one echoed line.
QUIT = (b"QUIT\r\n", b"ERROR ")


def storm_process(
    port: int,
    seconds: float,
    ready: threading.Barrier,
    results: multiprocessing.Queue[dict[str, int]],
    exchange: tuple[bytes, bytes] = QUIT,
) -> None:
    """One client process of the storm: how many connections ended which way, into ``results``."""
    ready.wait(timeout=60)
    results.put(asyncio.run(_storm(port, seconds, exchange)))


async def _storm(port: int, seconds: float, exchange: tuple[bytes, bytes]) -> dict[str, int]:
    request, reply = exchange
    counts = {"completed": 0, "connect_timeout": 0, "connect_error": 0, "reply_error": 0}
    deadline = time.monotonic() + seconds

    async def one_loop() -> None:
        while time.monotonic() < deadline and counts["completed"] < STORM_MAX:
            try:
                async with asyncio.timeout(TIMEOUT):
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
            except TimeoutError:
                counts["connect_timeout"] += 1
                continue
            except OSError:
                counts["connect_error"] += 1
                await asyncio.sleep(0.01)  # e.g. out of ephemeral ports: do not spin
                continue
            try:
                writer.write(request)
                async with asyncio.timeout(TIMEOUT):
                    line = await reader.readline()
                counts["completed" if line.startswith(reply) else "reply_error"] += 1
            except (TimeoutError, OSError):
                counts["reply_error"] += 1
            finally:
                writer.close()

    await asyncio.gather(*(one_loop() for _ in range(STORM_WORKERS)))
    return counts


async def ping_while(port: int, seconds: float) -> list[float]:
    """PINGERS registered clients PING in turn for ``seconds``; every round trip, in seconds."""
    rtts: list[float] = []
    clients = [await _registered(port, f"pinger{number}") for number in range(PINGERS)]
    deadline = time.monotonic() + seconds

    async def ping(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sequence = 0
        while time.monotonic() < deadline:
            sequence += 1
            started = time.monotonic()
            writer.write(f"PING :{sequence}\r\n".encode())
            while not (line := await reader.readline()).endswith(f" :{sequence}\r\n".encode()):
                if not line:
                    raise ConnectionError(f"the server closed a PINGing client: {port}")
            rtts.append(time.monotonic() - started)
            await asyncio.sleep(PING_GAP)

    await asyncio.gather(*(ping(*client) for client in clients))
    for _, writer in clients:
        writer.close()
    return rtts


async def _registered(port: int, nick: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"NICK {nick}\r\nUSER u 0 * :U\r\n".encode())
    while b" 422 " not in (line := await reader.readline()):  # the welcome's end (no MOTD)
        if not line:
            raise ConnectionError(f"the server closed {nick} before welcoming it")
    return reader, writer


def save(report: Report, out: Path, settings: Settings) -> list[Path]:
    """storm.json (raw figures and the machine) and storm.md (the table the docs include)."""
    path = report.save_json(out, settings)
    table = out / f"{NAME}.md"
    table.write_text(markdown(report, json.loads(path.read_text())))
    return [path, table]


def markdown(report: Report, document: dict[str, Any]) -> str:
    """The table, with the machine it was measured on."""
    machine = document["machine"]
    load = document["raw"]["load_average_1min"]
    lines = [
        "| " + " | ".join(report.columns) + " |",
        "|" + "---|" * len(report.columns),
        *(
            "| "
            + " | ".join(f"{cell:,}" if isinstance(cell, int) else str(cell) for cell in row)
            + " |"
            for row in report.rows
        ),
        "",
        f"{report.title}. Measured on {machine['cores']} cores, Python {machine['python']}, "
        f"trio {machine['trio']}, anyio {machine['anyio']}, uvloop {machine['uvloop']}; "
        f"1-minute load average {load['before']:.1f} before the run and {load['after']:.1f} "
        "after (above 0 means other work shared the cores).",
        "",
    ]
    return "\n".join(lines)
