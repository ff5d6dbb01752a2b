"""memory: a client that sends without ever reading, and what each echo server's RSS does.

An echo server that reads while its peer does not read must buffer the echo
somewhere. With backpressure (drain(), send_all(), anyio's send()) it stops
reading once the kernel buffers are full, the client's sends stall and RSS
stays flat; asyncio-nodrain keeps reading and appending to the transport's
buffer, so RSS grows as fast as the client sends.
"""

from __future__ import annotations

import socket
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from matplotlib.figure import Figure

NAME = "memory"
GiB = 1024 * MiB
CHUNK = 256 * 1024
SAMPLE_INTERVAL = 0.1
RSS_CAP = GiB  # This machine has no swap: end a run long before the server could exhaust it.
# No byte accepted for this long means the server stopped reading: backpressure reached
# the client, so the server's memory is bounded.
STALL = 1.0


@dataclass(slots=True)
class Flood:
    """One server's run: samples every SAMPLE_INTERVAL since the client connected."""

    label: str
    baseline_rss: int
    times: list[float] = field(default_factory=list)
    growth_mib: list[float] = field(default_factory=list)
    sent_mib: list[float] = field(default_factory=list)
    stalled_for: float = 0.0

    @property
    def bounded(self) -> bool:
        return self.stalled_for >= STALL

    def slope(self) -> float:
        """RSS growth in MiB/s, least squares over the whole run."""
        return statistics.linear_regression(self.times, self.growth_mib).slope


def limits(quick: bool) -> tuple[float, int]:
    """How long a flood may last (s), and how many bytes it may send."""
    return (2.0, 100 * MiB) if quick else (10.0, 500 * MiB)


def flood(server: ServerUnderTest, settings: Settings) -> Flood:
    """Send without reading until the time or byte limit, RSS_CAP, or (quick) a stall."""
    duration, limit = limits(settings.quick)
    result = Flood(server.label, server.rss())
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        start = last_progress = next_sample = time.monotonic()
        sent = 0
        while True:
            now = time.monotonic()
            if now >= next_sample:
                rss = server.rss()
                result.times.append(now - start)
                result.growth_mib.append((rss - result.baseline_rss) / MiB)
                result.sent_mib.append(sent / MiB)
                result.stalled_for = now - last_progress
                # A quick run ends at the first stall: the server has stopped
                # reading, so its RSS can no longer grow; a full run goes on
                # to show that it stays flat.
                if (
                    now - start >= duration
                    or rss >= RSS_CAP
                    or (settings.quick and result.bounded)
                    or (sent >= limit and now - last_progress >= SAMPLE_INTERVAL)
                ):
                    return result
                next_sample += SAMPLE_INTERVAL
                continue
            if sent >= limit:
                # Everything is sent; a last sample SAMPLE_INTERVAL later lets
                # the server take in what is still in the kernel buffers.
                time.sleep(next_sample - now)
                continue
            # The timeout ends a blocked send at the next sample, so a stalled
            # server shows up as a flat "sent" line, not as a hung client. A
            # fresh (zeroed, cheap) object per send, since uvloop keeps
            # references to written objects and a reused one can hide growth.
            sock.settimeout(next_sample - now)
            try:
                sent += sock.send(bytes(min(CHUNK, limit - sent)))
            except TimeoutError:
                continue
            last_progress = time.monotonic()


def run(settings: Settings) -> Report:
    floods: list[Flood] = []
    for impl, loop in [*MAIN, *VARIANTS, *ON_UVLOOP]:
        with ServerUnderTest.echochat(impl, "echo", loop=loop) as server:
            server.warm_up()
            progress(NAME, f"{server.label}: flooding without reading")
            floods.append(flood(server, settings))
        last = floods[-1]
        progress(
            NAME,
            f"{last.label}: sent {last.sent_mib[-1]:.1f} MiB, RSS +{max(last.growth_mib):.1f} MiB",
        )
    rows: list[list[object]] = [
        [
            result.label,
            result.sent_mib[-1],
            max(result.growth_mib),
            result.slope(),
            "yes" if result.bounded else "no",
        ]
        for result in floods
    ]
    raw = {
        result.label: {
            "baseline_rss_mib": result.baseline_rss / MiB,
            "t_s": result.times,
            "rss_growth_mib": result.growth_mib,
            "sent_mib": result.sent_mib,
        }
        for result in floods
    }
    plot = plot_growth(raw, settings.quick, settings.out)
    notes = [
        "Each server was warmed up first (one connect/send/read/close), then one client sent "
        "without reading; growth is RSS over the RSS after warm-up.",
        "sent = what the kernel buffers and the server's user-space buffers took in. "
        f"bounded = the client's sends stalled for {STALL:.0f} s: the server stopped reading.",
        f"plot: {plot}",
    ]
    return Report(
        name=NAME,
        title="A client that never reads: server memory per implementation (echo service)",
        columns=["implementation", "sent MiB", "peak RSS growth MiB", "slope MiB/s", "bounded"],
        rows=rows,
        raw=raw,
        notes=notes,
    )


def cap_reached(run: dict[str, Any], quick: bool) -> str | None:
    """Which limit ended a run that had not stopped growing, from its saved figures."""
    _, send_limit = limits(quick)
    if run["sent_mib"][-1] >= send_limit / MiB:
        return f"stopped at the {send_limit // MiB} MiB send cap"
    if run["baseline_rss_mib"] + run["rss_growth_mib"][-1] >= RSS_CAP / MiB:
        return f"stopped at the {RSS_CAP // MiB} MiB RSS cap"
    return None


def growth_figure(runs: dict[str, dict[str, Any]], quick: bool) -> Figure:
    """RSS growth over time per server, from the figures ``run`` saves in the JSON."""
    from matplotlib.ticker import ScalarFormatter  # noqa: PLC0415  (optional extra, as in common)

    figure = new_figure("Server RSS while a client sends and never reads", width=9.5)
    axes = figure.subplots()
    # One colour per implementation, dashed on uvloop, so each pairs with its twin.
    colours: dict[str, str] = {}
    for label, run in runs.items():
        impl, _, loop = label.partition("+")
        colour = colours.setdefault(impl, f"C{len(colours)}")
        cap = cap_reached(run, quick)
        times, growth = run["t_s"], run["rss_growth_mib"]
        axes.plot(
            times,
            growth,
            "--" if loop else "-",
            color=colour,
            label=label if cap is None else f"{label}: {cap} (x)",
        )
        if cap is not None:
            # The line ends because the experiment stopped it, not because growth did.
            axes.plot(times[-1:], growth[-1:], "x", color=colour, markersize=9, mew=2)
    # symlog: linear near zero, where the bounded servers sit within a few
    # MiB, and logarithmic above, where asyncio-nodrain climbs by hundreds.
    axes.set_yscale("symlog", linthresh=1.0)
    axes.yaxis.set_major_formatter(ScalarFormatter())
    axes.set_xlabel("seconds since the client connected")
    axes.set_ylabel("RSS growth over baseline (MiB)")
    axes.grid(True, which="both", alpha=0.3)
    # Beside the axes: inside, the legend would cover the flat lines of the bounded servers.
    axes.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return figure


def plot_growth(runs: dict[str, dict[str, Any]], quick: bool, out: Path) -> Path:
    return save_figure(growth_figure(runs, quick), out, NAME)
