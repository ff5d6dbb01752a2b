"""layers: asyncio's three networking layers ranked, on asyncio's loop and on uvloop.

``echochat bench layers`` runs the minimal echo servers of asyncio's socket API
(``loop.sock_recv_into()``/``sock_sendall()``), its Streams and its
Transport/Protocol layer, each on asyncio's own loop and on uvloop: the three
benchmarks of uvloop's README chart, whose ranking (Protocol > Streams >
sockets) is widely repeated. Two loads, each in interleaved rounds with fresh
servers:

- echo, closed loop, 10 connections, at 1, 10 and 100 KiB (``echo.measure``,
  the C load generator where gcc is present): messages/s and the server's
  CPU per message;
- an accept storm (``storm.storm_process``): STORM_PROCESSES processes of
  STORM_WORKERS loops of connect, one echoed line, close, for a fixed time:
  connections/s and the server's CPU per connection. The Streams and Protocol
  servers accept through the loop's own server (create_server), the sockets
  server with one ``sock_accept()`` per connection.

Everything runs on 127.0.0.1, bounded in time and count. Clients and server
share the machine's cores, so the figures rank servers on one machine.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import statistics
import time
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

from echochat.bench.echo import SIZES, EchoResult, KiB, Minimal, Start, measure, start_minimal
from echochat.bench.native import ClientChoice, load_generator
from echochat.bench.storm import STORM_PROCESSES, STORM_WORKERS, storm_process
from echochat.experiments.common import machine, progress
from echochat.launch import ServerUnderTest
from echochat.registry import EventLoop

NAME = "layers"
DEFAULT_OUT = Path("build/layers")
LAYERS = (
    Minimal("asyncio sockets", "asyncio_sockets"),
    Minimal("asyncio streams", "asyncio_streams"),
    Minimal("asyncio protocol", "asyncio_protocol"),
)
LOOPS: tuple[EventLoop, ...] = ("asyncio", "uvloop")
QUICK_ROUNDS = 1
ECHO_SECONDS = 2.0
STORM_SECONDS = 2.0
ECHOED_LINE = (b"x\n", b"x\n")


@dataclass(slots=True)
class StormRun:
    label: str
    seconds: float
    completed: int
    failed: int
    server_cpu_s: float


def starts() -> list[Start]:
    return [partial(start_minimal, layer, loop) for loop in LOOPS for layer in LAYERS]


def accept_storm(server: ServerUnderTest, seconds: float) -> StormRun:
    """Connect, exchange one line and close, from every storm worker, for ``seconds``."""
    context = multiprocessing.get_context("spawn")
    ready = context.Barrier(STORM_PROCESSES + 1)
    results: multiprocessing.Queue[dict[str, int]] = context.Queue()
    storms = [
        context.Process(
            target=storm_process, args=(server.port, seconds, ready, results, ECHOED_LINE)
        )
        for _ in range(STORM_PROCESSES)
    ]
    for process in storms:
        process.start()
    try:
        ready.wait(timeout=60)
        cpu, started = server.cpu_seconds(), time.monotonic()
        counts = [results.get(timeout=seconds + 60) for _ in storms]
        elapsed, cpu = time.monotonic() - started, server.cpu_seconds() - cpu
    finally:
        for process in storms:
            process.join(timeout=10)
            process.kill()
    completed = sum(count["completed"] for count in counts)
    failed = sum(sum(count.values()) for count in counts) - completed
    return StormRun(server.label, elapsed, completed, failed, cpu)


def run(rounds: int, client: ClientChoice) -> dict[str, Any]:
    generator, note = load_generator(client)
    progress(NAME, note)
    load_before = os.getloadavg()[0]
    echo: list[EchoResult] = []
    storm: list[StormRun] = []
    for round_number in range(rounds):
        progress(NAME, f"round {round_number + 1} of {rounds}: echo")
        echo += measure(starts(), SIZES, duration=ECHO_SECONDS, client=generator)
        # The storm, interleaved the same way: every server once per round,
        # in the opposite order each round.
        order = starts() if round_number % 2 == 0 else starts()[::-1]
        for start in order:
            with start() as server:
                server.warm_up()
                storm.append(accept_storm(server, STORM_SECONDS))
                progress(NAME, f"storm: {server.label}: {storm[-1].completed} connections")
    return {
        "machine": machine(),
        "client": note,
        "rounds": rounds,
        "load_average_1min": {"before": load_before, "after": os.getloadavg()[0]},
        "echo_runs": [asdict(result) for result in echo],
        "storm_runs": [asdict(result) for result in storm],
    }


def summary(document: dict[str, Any]) -> str:
    """The markdown tables docs/performance.md quotes: medians over the rounds."""
    labels = [
        layer.label if loop == "asyncio" else f"{layer.label}+{loop}"
        for loop in LOOPS
        for layer in LAYERS
    ]
    echo = document["echo_runs"]
    lines = [
        "| server | "
        + " | ".join(f"{size // KiB} KiB msgs/s (CPU µs/msg)" for size in SIZES)
        + " |",
        "|---|" + "---|" * len(SIZES),
    ]
    for label in labels:
        cells = []
        for size in SIZES:
            runs = [r for r in echo if r["label"] == label and r["size"] == size]
            rate = statistics.median(r["msgs_per_s"] for r in runs)
            cpu = statistics.median(r["server_cpu_s_per_msg"] for r in runs) * 1e6
            low, high = min(r["msgs_per_s"] for r in runs), max(r["msgs_per_s"] for r in runs)
            cells.append(f"{rate:,.0f} ({cpu:.0f}); {low:,.0f}-{high:,.0f}")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "| server | connections/s | failed | server CPU µs/connection |",
        "|---|---|---|---|",
    ]
    for label in labels:
        runs = [r for r in document["storm_runs"] if r["label"] == label]
        rate = statistics.median(r["completed"] / r["seconds"] for r in runs)
        cpu = statistics.median(r["server_cpu_s"] / max(r["completed"], 1) for r in runs) * 1e6
        failed = sum(r["failed"] for r in runs)
        lines.append(f"| {label} | {rate:,.0f} | {failed} | {cpu:.0f} |")
    info, load = document["machine"], document["load_average_1min"]
    lines += [
        "",
        f"{document['rounds']} interleaved round(s); echo windows of {ECHO_SECONDS:g} s, "
        f"{document['client']}; storm windows of {STORM_SECONDS:g} s, {STORM_PROCESSES} "
        f"processes x {STORM_WORKERS} connect/echo/close loops. Medians, with the slowest and "
        f"fastest round. {info['cores']} cores, Python {info['python']}, uvloop "
        f"{info['uvloop']}; 1-minute load average {load['before']:.1f} before and "
        f"{load['after']:.1f} after.",
        "",
    ]
    return "\n".join(lines)


def save(document: dict[str, Any], out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    raw, table = out / f"{NAME}.json", out / f"{NAME}.md"
    raw.write_text(json.dumps(document, indent=2) + "\n")
    table.write_text(summary(document))
    return [raw, table]
