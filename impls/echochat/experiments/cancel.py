"""Experiment ``cancel``: a large send cut off by a timeout, and what the peer then reads.

Per model, in a process of its own (``probes.py``): the framework sends one
8 MiB line to a peer that does not read, under the framework's own timeout.
When the timeout has cut the send off, the peer reads whatever the kernels
hold, without letting the framework run: that is what had left the framework
when the cancel hit. Then a thread reads to EOF while the framework sends a
marker line and closes; the peer's whole byte stream shows whether the rest of
the message still went out and whether the marker starts a line of its own.
"""

from __future__ import annotations

from collections.abc import Callable
from statistics import median
from typing import TYPE_CHECKING, Any

from echochat.experiments import Settings
from echochat.experiments.common import MiB, Report, new_figure, progress, save_figure
from echochat.experiments.probes import MARKER, MODELS, KiB, available, run_probe

if TYPE_CHECKING:
    from matplotlib.figure import Figure

NAME = "cancel"
ORDER = [
    "asyncio-drain",
    "uvloop-drain",
    "asyncio-sockets",
    "uvloop-sockets",
    "trio",
    "anyio-asyncio",
    "anyio-trio",
]
SIZE = 8 * MiB


def run(settings: Settings) -> Report:
    # Several runs show whether the amount the kernels take varies; it has not so far.
    timeout, repeats = (0.25, 1) if settings.quick else (0.5, 3)
    models, skipped = available(ORDER)
    runs = probe_models(NAME, models, timeout, repeats)
    for model, results in runs.items():
        if any(result["finished"] for result in results):
            raise RuntimeError(f"{model}: the 8 MiB send finished within {timeout} s")
    rows = [
        [MODELS[model].label, *outcome_cells(results, peer_reads, state)]
        for model, results in runs.items()
    ]
    plot = save_figure(draw(runs), settings.out, NAME)
    notes = [
        f"plot: {plot}",
        f"One {SIZE // MiB} MiB line to a peer that does not read, cut off after {timeout} s; "
        f"then a {len(MARKER)}-byte marker line on the same stream, then close. "
        f"{repeats} run(s) per model: median (min-max) in KiB.",
        "asyncio and uvloop: write() hands the whole message to the transport, and the "
        "timeout cancels only drain(), which takes nothing back; the rest goes out as soon "
        "as the peer reads, and the marker after it (Lib/asyncio/streams.py, "
        "StreamWriter.drain; selector_events.py, _SelectorSocketTransport.write).",
        "trio: send_all() loops over socket.send() with no buffer of its own, so the cancel "
        "drops the unsent rest and nothing marks the stream broken: the next send_all() "
        "works and the marker ends the truncated line (trio _highlevel_socket.py, "
        "SocketStream.send_all; trio.abc.SendStream.send_all docs; trio#889).",
        "asyncio's socket API, on asyncio's loop and on uvloop: sock_sendall() loops over "
        "socket.send() from a writer callback and has no buffer of its own, like trio's "
        "send_all(); the cancel removes the writer and drops the unsent rest, nothing marks the "
        "socket broken, and the marker ends the truncated line (Lib/asyncio/selector_events.py, "
        "sock_sendall and _sock_sendall; uvloop/loop.pyx, Loop.sock_sendall). The "
        "asyncio-sockets adapter therefore sends its SendQ farewell only if no sock_sendall() "
        "was cut off (ChatService.handle_client, asyncio_sockets_impl/chat.py).",
        "'kernel took' is what the peer could read before the framework ran again. trio sets "
        "TCP_NOTSENT_LOWAT = 16 KiB on its SocketStream (trio#72), so send_all() stops "
        "while the kernel holds little; anyio's trio backend wraps accepted sockets itself "
        "without it (anyio _backends/_trio.py, TCPSocketListener.accept).",
        "anyio on asyncio: send() is transport.write() and waits for an empty buffer, so a "
        "cancelled send() behaves like asyncio's drain(); but aclose() calls "
        "transport.abort(), which would drop the rest had no later send() flushed it "
        "(anyio _backends/_asyncio.py, SocketStream.send, SocketStream.aclose).",
        "echochat: the trio and anyio adapters send the SendQ farewell only if no send was "
        "cut off (write_loop's 'sending' flag, trio_impl/chat.py, anyio_impl/chat.py), which "
        "the trio and anyio-on-trio rows require and anyio-on-asyncio does not need; the "
        "asyncio adapter write()s the farewell at once (ChatConnection.close, "
        "asyncio_impl/chat.py), which the asyncio rows show is safe: it follows whole chunks.",
    ]
    if skipped:
        notes.append(f"skipped (uvloop not installed): {', '.join(skipped)}")
    return Report(
        name=NAME,
        title="A send cut off by a timeout: 8 MiB to a peer that does not read",
        columns=[
            "model",
            "kernel took (KiB)",
            "sent after (KiB)",
            "whole message",
            "next send",
            "peer reads",
            "stream after the cancel",
            "NOTSENT_LOWAT",
        ],
        rows=rows,
        raw={"size": SIZE, "timeout": timeout, "repeats": repeats, "runs": runs},
        notes=notes,
    )


def probe_models(
    name: str, models: list[str], timeout: float, repeats: int, *options: str
) -> dict[str, list[dict[str, Any]]]:
    """Each model's cancel probe, ``repeats`` times: one SIZE send under ``timeout``."""
    runs: dict[str, list[dict[str, Any]]] = {}
    for model in models:
        progress(name, f"{MODELS[model].label}: {repeats} x one 8 MiB send under {timeout} s")
        command = ["--size", str(SIZE), "--timeout", str(timeout), *options]
        runs[model] = [run_probe("cancel", model, *command) for _ in range(repeats)]
    return runs


def outcome_cells(
    results: list[dict[str, Any]],
    peer_reads: Callable[[dict[str, Any]], str],
    state: Callable[[dict[str, Any]], str],
) -> list[str]:
    """What a model's runs left: before and after, whole or not, the next send, what the
    peer read, the stream's state and the socket's NOTSENT_LOWAT."""
    return [
        spread([result["taken_at_cancel"] / KiB for result in results]),
        spread([result["delivered_later"] / KiB for result in results]),
        agree([whole(result) for result in results]),
        agree([next_send(result) for result in results]),
        agree([peer_reads(result) for result in results]),
        agree([state(result) for result in results]),
        agree([lowat(result) for result in results]),
    ]


def spread(values: list[float]) -> str:
    middle = f"{median(values):,.0f}"
    if min(values) == max(values):
        return middle
    return f"{middle} ({min(values):,.0f}-{max(values):,.0f})"


def agree(values: list[str]) -> str:
    """One value if every run agreed, else each distinct one."""
    return " | ".join(dict.fromkeys(values))


def whole(result: dict[str, Any]) -> str:
    return "yes" if result["taken_at_cancel"] + result["delivered_later"] == SIZE else "no"


def next_send(result: dict[str, Any]) -> str:
    if result["next_send_error"] is not None:
        return str(result["next_send_error"])
    return "ok" if result["next_send_ok"] else "timed out"


def peer_reads(result: dict[str, Any]) -> str:
    if result["intact"]:
        return "message, marker"
    body = result["taken_at_cancel"] + result["delivered_later"]
    marker = ", marker on the same line" if result["marker_received"] else ", no marker"
    return f"{body / KiB:,.0f} KiB of the message{marker}"


def state(result: dict[str, Any]) -> str:
    if result["buffered_at_cancel"] is not None:
        return f"open, {result['buffered_at_cancel'] / KiB:,.0f} KiB left in the transport"
    if result["delivered_later"]:
        return "open, the rest left in the transport"
    return "open, the rest dropped, not marked broken"


def lowat(result: dict[str, Any]) -> str:
    if not result["notsent_lowat"]:
        return "unset"
    return f"{result['notsent_lowat'] / KiB:g} KiB"


def draw(runs: dict[str, list[dict[str, Any]]]) -> Figure:
    figure = new_figure("An 8 MiB send cut off by a timeout: where its bytes went", height=4.5)
    axes = figure.subplots()
    labels = [MODELS[model].label for model in runs]
    before = [median(r["taken_at_cancel"] for r in results) / MiB for results in runs.values()]
    after = [median(r["delivered_later"] for r in results) / MiB for results in runs.values()]
    lost = [SIZE / MiB - b - a for b, a in zip(before, after, strict=True)]
    rows = range(len(labels))
    axes.barh(rows, before, color="tab:blue", label="taken by the kernel before the cancel")
    axes.barh(rows, after, left=before, color="tab:orange", label="sent after the cancel")
    starts = [b + a for b, a in zip(before, after, strict=True)]
    axes.barh(rows, lost, left=starts, color="lightgrey", label="never sent")
    axes.set_yticks(rows, labels)
    axes.invert_yaxis()  # The table's order, top to bottom.
    axes.set_xlim(0, SIZE / MiB)
    axes.set_xlabel("MiB of the message the peer received")
    figure.legend(loc="outside lower center", ncols=3, fontsize=8)
    return figure
