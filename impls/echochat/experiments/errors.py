"""Experiment ``errors``: what each send primitive does after the peer resets the connection.

Per model, in a process of its own (``probes.py``): the framework accepts a
connection from a plain socket and sends it one 1 KiB line; the peer reads
it and closes with SO_LINGER {1, 0}, which sends RST; the probe waits with
poll() until its socket holds the RST, then sends 1 KiB lines, yielding to the
event loop once per line as a server does between messages, until something
surfaces or the bound is reached. The first ``sock.send()`` after the RST is
the one that meets it in every model, so the counts are deterministic.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from echochat.experiments import Settings
from echochat.experiments.common import Report, new_figure, progress, save_figure
from echochat.experiments.probes import MODELS, available, run_probe

if TYPE_CHECKING:
    from matplotlib.figure import Figure

NAME = "errors"
ORDER = [
    "asyncio-write",
    "asyncio-drain",
    "asyncio-protocol",
    "asyncio-sockets",
    "trio",
    "anyio-asyncio",
    "anyio-trio",
    "uvloop-write",
    "uvloop-drain",
    "uvloop-sockets",
]


def run(settings: Settings) -> Report:
    count, seconds = (2_000, 2.0) if settings.quick else (20_000, 5.0)
    models, skipped = available(ORDER)
    results: list[dict[str, Any]] = []
    for model in models:
        progress(NAME, f"{MODELS[model].label}: up to {count:,} writes after the reset")
        results.append(run_probe(NAME, model, "--count", str(count), "--seconds", str(seconds)))
    rows = [
        [
            MODELS[result["model"]].label,
            result["attempts"],
            result["accepted"],
            surfaced(result),
            result["surfaced_in"] or "-",
            logged(result),
        ]
        for result in results
    ]
    plot = save_figure(draw(results), settings.out, NAME)
    notes = [
        f"plot: {plot}",
        f"Each model sent 1 KiB lines after the peer's RST, up to {count:,} or {seconds:g} s; "
        "'accepted' counts sends that returned normally (write()+drain(): both calls).",
        "asyncio: the first write() meets the RST inside transport.write(); _fatal_error() "
        "logs an OSError only in debug mode and _force_close() schedules "
        "connection_lost(exc); every later write() returns at once, dropped and counted in "
        "_conn_lost, which logs a warning once it has reached 5, i.e. for all but the first 5 "
        "writes (constants.LOG_THRESHOLD_FOR_CONNLOST_WRITES; "
        "Lib/asyncio/selector_events.py, _SelectorSocketTransport.write).",
        "drain() first re-raises the StreamReader's stored exception; here the write() met "
        "the reset before the loop did, so there is none yet, and drain() yields once so "
        "connection_lost() can run, then _drain_helper() raises "
        "ConnectionResetError('Connection lost'). When the loop has seen the reset first, "
        "drain() raises the reader's ConnectionResetError(104) instead "
        "(Lib/asyncio/streams.py, StreamWriter.drain, FlowControlMixin._drain_helper; "
        "the drain_after_reset version probe).",
        "trio and anyio on trio: send_all()/send() raise on the send that meets the RST "
        "(trio _highlevel_socket.py, _translate_socket_errors_to_stream_errors; anyio "
        "_backends/_trio.py, _convert_socket_error). anyio on asyncio: send() writes, then "
        "checkpoints without looking again, so the next send() raises "
        "(anyio _backends/_asyncio.py, SocketStream.send).",
        "asyncio's socket API, on both loops: sock_sendall() calls socket.send() at once "
        "(Lib/asyncio/selector_events.py, sock_sendall; uvloop/loop.pyx, Loop.sock_sendall), so "
        "the first send after the RST raises the kernel's ConnectionResetError, and nothing "
        "is logged: there is no transport to hold the error.",
        "uvloop: write() after the loss raises RuntimeError ('the handler is closed', "
        "UVHandle._ensure_alive) once the loop has handled it, instead of being dropped, "
        "and UVStream.write never logs.",
    ]
    if skipped:
        notes.append(f"skipped (uvloop not installed): {', '.join(skipped)}")
    return Report(
        name=NAME,
        title="Writing after the peer reset the connection (1 KiB lines)",
        columns=["model", "tried", "accepted", "what surfaced", "surfaced in", "logged"],
        rows=rows,
        raw={"count": count, "seconds": seconds, "results": results},
        notes=notes,
    )


def surfaced(result: dict[str, Any]) -> str:
    if result["exception"] is None:
        return "nothing"
    if result["cause"] is None:
        # uvloop's message names the transport by address: the same every run without it.
        return re.sub(r" 0x[0-9a-f]+", "", result["exception"])
    # trio and anyio wrap the OSError: the wrapper's type, then what it wraps.
    return f"{result['exception_type']} from {result['cause']}"


def logged(result: dict[str, Any]) -> str:
    if not result["logged"]:
        return "nothing"
    first = result["log_messages"][0]
    return f"{result['logged']:,} x '{first}'"


def draw(results: list[dict[str, Any]]) -> Figure:
    figure = new_figure(
        "Sends accepted after the peer's RST, before anything surfaced", width=10, height=5
    )
    axes = figure.subplots()
    # Each tick names the model and what finally surfaced.
    labels = [
        f"{MODELS[result['model']].label}\n{result['exception_type'] or 'nothing raised'}"
        for result in results
    ]
    accepted = [result["accepted"] for result in results]
    colours = ["tab:red" if result["exception"] is None else "tab:blue" for result in results]
    bars = axes.bar(range(len(results)), accepted, color=colours)
    axes.bar_label(bars, labels=[f"{count:,}" for count in accepted], fontsize=9)
    axes.set_xticks(range(len(results)), labels, rotation=30, ha="right", fontsize=8)
    # Counts run from 0 to tens of thousands: linear up to 1, logarithmic above.
    axes.set_yscale("symlog", linthresh=1)
    axes.set_ylim(0, max(accepted) * 20)
    axes.set_ylabel("sends accepted after the RST")
    return figure
