"""Experiment ``sendq-burst``: the SendQ of a fast and of a stalled member during a burst.

Per implementation, three members join one channel: a talker, a member that
reads at kernel speed and one that never reads (a 4 KiB receive window). The
talker sends 2,600 lines of 400 bytes (about 1 MB) in one send, with flood
control off, the default SendQ (256 KiB) and ``--send-buffer 262144``, as the
contract test does (``tests/contract/test_sendq.py``).

The SendQ lives inside the server, so the server is run at ``--log-level
debug``, where the hub logs each connection's SendQ whenever it changes, with
the system's monotonic clock (``ChatHub.trace_sendq``); times are counted from
the talker's send. Run at the commit before the fix (with the same trace
added), the same experiment gave ``sendq-burst-before.json``: when that file is
in the output directory, the figure shows it beside this run.
"""

from __future__ import annotations

import json
import re
import time
from typing import TYPE_CHECKING, Any

from echochat.experiments import Settings
from echochat.experiments.burst import BurstReader, burst, member
from echochat.experiments.common import MAIN, VARIANTS, Report, new_figure, progress, save_figure
from echochat.launch import ServerUnderTest
from echochat.registry import BY_NAME, EventLoop

if TYPE_CHECKING:
    from matplotlib.figure import Figure

NAME = "sendq-burst"
BEFORE = f"{NAME}-before.json"
CHANNEL = "#burst"
LINES, SIZE = 2_600, 400
SENDQ = 262_144
SEND_BUFFER = 262_144
# Connection ids in the order the members connect (the server counts from 1).
TALKER, FAST, STALLED = 1, 2, 3
_SAMPLE = re.compile(r"sendq (\d+) (\d+) ([\d.]+)$", re.MULTILINE)


def measure(impl: str, loop: EventLoop) -> dict[str, Any]:
    options = ("--sendq", str(SENDQ), "--send-buffer", str(SEND_BUFFER), "--log-level", "debug")
    with ServerUnderTest.echochat(impl, "chat", *options, loop=loop) as server:
        talker = member(server.port, "talker", CHANNEL)
        fast = member(server.port, "fast", CHANNEL)
        # A small receive window: the kernel holds little on its behalf.
        stalled = member(server.port, "stalled", CHANNEL, rcvbuf=4096)
        started = time.monotonic()
        # asyncio-nodrain never drops anyone: its SendQ empties at once.
        quitter = "stalled" if BY_NAME[impl].drain else None
        reader = BurstReader(fast, "talker", LINES, started + 20, quitter=quitter)
        reader.start()
        talker.sendall(burst(CHANNEL, LINES, SIZE))
        reader.join(25)
        for sock in (talker, fast, stalled):
            sock.close()
        log = server.stderr()
    samples: dict[int, list[tuple[float, int]]] = {TALKER: [], FAST: [], STALLED: []}
    for conn, queued, at in _SAMPLE.findall(log):
        if float(at) >= started and int(conn) in samples:
            samples[int(conn)].append((float(at) - started, int(queued)))
    got = reader.received
    return {
        "fast_got": got.got,
        "fast_ended": got.ended,
        "stalled_dropped_after": got.quit_after,
        "fast_all_in_s": None if got.all_at is None else got.all_at - started,
        "fast": samples[FAST],
        "stalled": samples[STALLED],
    }


def run(settings: Settings) -> Report:
    results: dict[str, dict[str, Any]] = {}
    for impl, loop in [*MAIN, *VARIANTS]:
        progress(NAME, f"{impl}: {LINES} x {SIZE} B in one send")
        results[impl] = measure(impl, loop)
    before_path = settings.out / BEFORE
    before = json.loads(before_path.read_text())["raw"] if before_path.exists() else {}
    plot = save_figure(draw(results, before), settings.out, NAME)
    rows = [
        [
            impl,
            f"{result['fast_got']}/{LINES}",
            result["fast_ended"] or "kept",
            max((queued for _, queued in result["fast"]), default=0) / 1024,
            result["stalled_dropped_after"],
        ]
        for impl, result in results.items()
    ]
    return Report(
        name=NAME,
        title="SendQ of a fast and a stalled member during a 1 MB burst, per implementation",
        columns=[
            "implementation",
            "fast got",
            "fast member",
            "fast SendQ peak KiB",
            "stalled dropped after line",
        ],
        rows=rows,
        raw=results,
        notes=[
            f"{LINES} lines of {SIZE} B in one send; --sendq {SENDQ}, --send-buffer "
            f"{SEND_BUFFER}, flood control off. SendQ sampled by the server at every change.",
            f"plot: {plot}",
        ],
    )


def draw(after: dict[str, dict[str, Any]], before: dict[str, dict[str, Any]]) -> Figure:
    runs = [("before the fix", before), ("after", after)] if before else [("", after)]
    figure = new_figure(
        "SendQ during a 1 MB burst: a fast member and one that never reads",
        width=5.0 * len(runs),
        height=2.0 * len(after),
    )
    axes = figure.subplots(len(after), len(runs), squeeze=False, sharex=True, sharey=True)
    for column, (label, results) in enumerate(runs):
        for row, impl in enumerate(after):
            ax = axes[row][column]
            result = results.get(impl)
            ax.axhline(SENDQ / 1024, color="grey", linestyle=":", linewidth=1)
            if result is not None:
                for member, colour in (("fast", "tab:blue"), ("stalled", "tab:red")):
                    points = result[member]
                    ax.step(
                        [at * 1000 for at, _ in points],
                        [queued / 1024 for _, queued in points],
                        where="post",
                        color=colour,
                        label=f"{member} member",
                    )
            ax.set_title(f"{impl}, {label}" if label else impl, fontsize=9)
            if column == 0:
                ax.set_ylabel("SendQ KiB")
    for ax in axes[-1]:
        ax.set_xlabel("ms after the burst was sent")
    axes[0][0].legend(fontsize=8, loc="upper right")
    return figure
