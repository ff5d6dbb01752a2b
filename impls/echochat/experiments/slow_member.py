"""slow-member: one channel member that never reads, and what it does to everyone else.

A sender posts numbered, timestamped PRIVMSGs at a steady rate into a channel
with HEALTHY members that read all the time and one member that never reads.
echochat queues each message for each member without waiting (per-client
queues, bounded by the SendQ), so the healthy members keep their latency and
the stalled one is dropped once its queue overflows. Two naive servers
(experiments/naive/, teaching variants) broadcast by awaiting each recipient
in turn: once the stalled member's buffers are full, that await lasts as long
as the member does not read, and nobody else gets anything meanwhile.
asyncio-nodrain never waits either, but never drops the stalled member: its
transport buffer grows instead.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from echochat.core.limits import DEFAULT_SENDQ
from echochat.experiments import Settings
from echochat.experiments.common import (
    MAIN,
    ON_UVLOOP,
    VARIANTS,
    MiB,
    Report,
    new_figure,
    progress,
    quantile,
    save_figure,
)
from echochat.launch import ServerUnderTest

if TYPE_CHECKING:
    from matplotlib.figure import Figure

NAME = "slow-member"
CHANNEL = "#slow"
HEALTHY = 10
RATE = 1000  # messages per second
TEXT = "x" * 180  # With the number and timestamp, ~200 bytes of text per message.
SMALL_SENDQ = 65_536
# The stalled member's socket, set before connecting so the handshake already
# uses them: a 4 KiB receive window, and the MSS a peer across an Ethernet
# advertises. On loopback the 64 KiB MSS lets Linux size the server's send
# buffer for a non-reading peer at megabytes (kernel_absorbs() measures it),
# which at this rate would hide every effect for seconds.
STALLED_RCVBUF = 4096
STALLED_MSS = 1460
SETUP_TIMEOUT = 10.0
RSS_INTERVAL = 0.1
BUCKET = 0.05  # seconds of posting time per point of the latency series
# The longest the selector waits, so the sender retries a refused send soon.
POLL = 0.005
NAIVE = {
    "naive-trio": "echochat.experiments.naive.trio_broadcast",
    "naive-asyncio": "echochat.experiments.naive.asyncio_broadcast",
}


@dataclass(frozen=True, slots=True)
class Case:
    """One row: how to start the server, and its SendQ (None: a naive server has none)."""

    label: str
    start: Callable[[], ServerUnderTest]
    sendq: int | None


def cases(settings: Settings) -> tuple[list[Case], list[str]]:
    """The servers to run, and a note on what a quick run leaves out.

    A quick run leaves out uvloop and the small SendQ to stay within seconds.
    """
    notes: list[str] = []
    pairs = [*MAIN, *VARIANTS, *([] if settings.quick else ON_UVLOOP)]
    result: list[Case] = []
    for impl, loop in pairs:
        label = impl if loop == "asyncio" else f"{impl}+{loop}"
        start = partial(ServerUnderTest.echochat, impl, "chat", loop=loop)
        result.append(Case(label, start, DEFAULT_SENDQ))
    if settings.quick:
        notes.append("quick run: no uvloop rows and no --sendq 65536 rows")
    else:
        # The same servers with a small SendQ drop the stalled member sooner.
        for impl, _ in MAIN:
            option = ("--sendq", str(SMALL_SENDQ))
            start = partial(ServerUnderTest.echochat, impl, "chat", *option)
            result.append(Case(f"{impl} --sendq {SMALL_SENDQ}", start, SMALL_SENDQ))
    result += [
        Case(label, partial(ServerUnderTest, label, [sys.executable, "-m", module]), None)
        for label, module in NAIVE.items()
    ]
    return result, notes


def join(port: int, nick: str, *, stalled: bool = False) -> tuple[socket.socket, bytes]:
    """A registered channel member; also returns what arrived after its PONG."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        if stalled:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, STALLED_RCVBUF)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, STALLED_MSS)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(SETUP_TIMEOUT)
        sock.connect(("127.0.0.1", port))
        rest = register(sock, nick)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock, rest


def register(sock: socket.socket, nick: str) -> bytes:
    """NICK, USER, JOIN and a PING in one go, then read to the PONG; return what follows.

    Reading to the PONG skips echochat's whole welcome as well as a naive
    server's single 001.
    """
    sock.sendall(
        f"NICK {nick}\r\nUSER u 0 * :slow-member\r\nJOIN {CHANNEL}\r\nPING :joined\r\n".encode()
    )
    pong = b" :joined\r\n"
    received = b""
    while (end := received.find(pong)) < 0:
        chunk = sock.recv(65536)
        if not chunk or len(received) > 65536:
            raise RuntimeError(f"{nick} could not join: {received[-300:]!r}")
        received += chunk
    return received[end + len(pong) :]


@dataclass(slots=True)
class Member:
    """A healthy member: what it received, as latency in ms per message number."""

    sock: socket.socket
    pending: bytes
    latency: list[float | None]
    count: int = 0
    last: int = -1
    in_order: bool = True
    # (messages it had received, seconds since start) when it saw the stalled member quit.
    saw_drop: tuple[int, float] | None = None

    def feed(self, data: bytes, now: float, start: float) -> None:
        *lines, self.pending = (self.pending + data).split(b"\n")
        for line in lines:
            words = line.split(b" ", 5)
            if len(words) == 6 and words[1] == b"PRIVMSG":
                # ":sender!u@host PRIVMSG #slow :NUMBER POSTED-AT xxx..."
                number = int(words[3][1:])
                self.latency[number] = (now - float(words[4])) * 1000
                self.count += 1
                self.in_order = self.in_order and number == self.last + 1
                self.last = number
            elif words[0].startswith(b":stalled!") and b" QUIT :SendQ exceeded" in line:
                self.saw_drop = (self.last + 1, now - start)


@dataclass(slots=True)
class Outcome:
    """One server's run; times in seconds since the first message was due."""

    label: str
    sendq: int | None
    posted_at: list[float]
    members: list[Member]
    end: float
    rss: list[tuple[float, float]] = field(default_factory=list)  # (s, MiB growth)

    @property
    def sent(self) -> int:
        return len(self.posted_at)

    def series(self) -> list[tuple[float, float, bool]]:
        """Per BUCKET of posting time: its start, the worst latency in it, and whether that
        is a lower bound (some member never got a message posted then: its age at the end).
        """
        worst: dict[int, tuple[float, bool]] = {}
        for number, posted in enumerate(self.posted_at):
            arrivals = [member.latency[number] for member in self.members]
            known = [a for a in arrivals if a is not None]
            censored = len(known) < len(arrivals)
            latency = (self.end - posted) * 1000 if censored else max(known)
            bucket = int(posted / BUCKET)
            before, was_censored = worst.get(bucket, (0.0, False))
            worst[bucket] = (max(before, latency), was_censored or censored)
        return [(b * BUCKET, *worst[b]) for b in sorted(worst)]

    def latencies(self) -> tuple[list[float], bool]:
        """Every (member, message) latency in ms, sorted, and whether some are lower bounds.

        A message that never arrived counts with its age at the end of the
        run: its latency is at least that, so the quantiles are lower bounds.
        """
        values: list[float] = []
        censored = False
        for member in self.members:
            for number in range(self.sent):
                latency = member.latency[number]
                if latency is None:
                    censored = True
                    latency = (self.end - self.posted_at[number]) * 1000
                values.append(latency)
        return sorted(values), censored

    def dropped(self) -> tuple[int, float] | None:
        drops = [member.saw_drop for member in self.members if member.saw_drop is not None]
        return min(drops) if drops else None


def timing(settings: Settings) -> tuple[float, float]:
    """Seconds of posting, and the most to wait after it for messages still under way."""
    return (1.5, 0.5) if settings.quick else (5.0, 1.0)


def measure(case: Case, settings: Settings) -> Outcome:
    duration, settle = timing(settings)
    total = round(RATE * duration)
    with case.start() as server, contextlib.ExitStack() as sockets:
        server.warm_up()
        stalled, _ = join(server.port, "stalled", stalled=True)
        sockets.callback(stalled.close)
        members: list[Member] = []
        for number in range(HEALTHY):
            sock, pending = join(server.port, f"healthy{number}")
            sockets.callback(sock.close)
            members.append(Member(sock, pending, [None] * total))
        sender, _ = join(server.port, "sender")
        sockets.callback(sender.close)
        # The sockets close before the server stops, so no server spends its
        # shutdown grace on a member that does not read.
        return post_and_read(case, server, sender, members, settle=settle)


def post_and_read(
    case: Case,
    server: ServerUnderTest,
    sender: socket.socket,
    members: list[Member],
    *,
    settle: float,
) -> Outcome:
    """Post a message per slot of ``members[0].latency`` at RATE while every member reads,
    then wait up to ``settle`` for the last ones.

    One selector loop, so the client is one thread (the GIL would make
    threads take turns anyway). Each message is stamped when it is due, not
    when the sender's socket takes it: a server that stops reading the sender
    then shows as latency, not as a sender that politely slowed down.
    """
    selector = selectors.DefaultSelector()
    for member in members:
        selector.register(member.sock, selectors.EVENT_READ, member)
    selector.register(sender, selectors.EVENT_READ, None)  # QUITs: read, and ignored.
    total = len(members[0].latency)
    outgoing = bytearray()
    posted_at: list[float] = []
    baseline = server.rss()
    start = time.monotonic()
    outcome = Outcome(case.label, case.sendq, posted_at, members, end=0.0, rss=[(0.0, 0.0)])
    deadline = start + total / RATE + settle
    next_sample = start + RSS_INTERVAL
    with selector:
        while (now := time.monotonic()) < deadline:
            while len(posted_at) < total and start + len(posted_at) / RATE <= now:
                outgoing += f"PRIVMSG {CHANNEL} :{len(posted_at)} {now:.6f} {TEXT}\r\n".encode()
                posted_at.append(now - start)
            if outgoing:
                with contextlib.suppress(BlockingIOError):
                    del outgoing[: sender.send(outgoing)]
            if len(posted_at) == total and all(member.count == total for member in members):
                break
            if now >= next_sample:
                outcome.rss.append((now - start, (server.rss() - baseline) / MiB))
                next_sample += RSS_INTERVAL
            due = start + len(posted_at) / RATE if len(posted_at) < total else deadline
            for key, _ in selector.select(min(max(due - now, 0.0), POLL)):
                reader: Member | None = key.data
                data = (sender if reader is None else reader.sock).recv(65536)
                if not data:
                    raise RuntimeError(f"{case.label} closed a connection it should keep")
                if reader is not None:
                    reader.feed(data, time.monotonic(), start)
    outcome.end = time.monotonic() - start
    outcome.rss.append((outcome.end, (server.rss() - baseline) / MiB))
    return outcome


def kernel_absorbs(mss: int | None) -> int:
    """Bytes a server socket accepts for a peer like the stalled member before it refuses more."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        with client:
            client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, STALLED_RCVBUF)
            if mss is not None:
                client.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, mss)
            client.connect(listener.getsockname())
            server, _ = listener.accept()
            with server:
                server.setblocking(False)
                taken = 0
                chunk = bytes(65536)
                # Bounded: no send buffer on this machine comes near 64 MiB.
                for _ in range(1024):
                    try:
                        taken += server.send(chunk)
                    except BlockingIOError:
                        break
                return taken


def row(label: str, figures: dict[str, Any]) -> list[Any]:
    """The table's row, from what ``raw`` made of the outcome."""
    latency = figures["latency_ms"]
    quantiles = [latency["p50"], latency["p99"], latency["max"]]
    dropped = figures["dropped_after_messages"]
    return [
        label,
        f"{min(figures['delivered'])}/{figures['sent']}",
        *[f"≥{value:,.0f}" if latency["lower_bounds"] else value for value in quantiles],
        "never" if dropped is None else f"after {dropped} ({figures['dropped_at_s']:.2f} s)",
        max(growth for _, growth in figures["rss_growth_mib"]),
    ]


def raw(outcome: Outcome) -> dict[str, Any]:
    values, censored = outcome.latencies()
    dropped = outcome.dropped()
    return {
        "sendq": outcome.sendq,
        "naive": outcome.sendq is None,
        "sent": outcome.sent,
        "delivered": [member.count for member in outcome.members],
        "in_order": all(member.in_order for member in outcome.members),
        "dropped_after_messages": None if dropped is None else dropped[0],
        "dropped_at_s": None if dropped is None else round(dropped[1], 3),
        "latency_ms": {
            "p50": quantile(values, 0.5),
            "p99": quantile(values, 0.99),
            "max": values[-1],
            "lower_bounds": censored,
        },
        "end_s": round(outcome.end, 3),
        # [posted from (s), worst latency of any member (ms), lower bound?] per BUCKET.
        "worst_latency_ms": [[round(t, 3), round(w, 2), c] for t, w, c in outcome.series()],
        "rss_growth_mib": [[round(t, 2), round(mib, 3)] for t, mib in outcome.rss],
    }


# Colour by implementation, line style by how it runs.
COLOURS = {
    "asyncio": "tab:blue",
    "trio": "tab:orange",
    "anyio-asyncio": "tab:green",
    "anyio-trio": "tab:purple",
    "asyncio-nodrain": "tab:brown",
    "asyncio-protocol": "tab:cyan",
    "asyncio-sockets": "tab:olive",
    "naive-trio": "tab:red",
    "naive-asyncio": "black",
}


def style(label: str) -> dict[str, Any]:
    impl = label.partition("+")[0].partition(" ")[0]
    if label in NAIVE:
        return {"color": COLOURS[impl], "linewidth": 2.5}
    linestyle = "--" if "+uvloop" in label else "-." if "--sendq" in label else "-"
    return {"color": COLOURS[impl], "linewidth": 1.0, "linestyle": linestyle}


# The figure's panels, left to right: a few servers each, so every line can be told apart.
PANELS = (
    "echochat",
    "teaching variants",
    "on uvloop",
    f"--sendq {SMALL_SENDQ}",
    "naive broadcasts",
)


def panel(label: str) -> str:
    if label in NAIVE:
        return "naive broadcasts"
    if "--sendq" in label:
        return f"--sendq {SMALL_SENDQ}"
    if "+uvloop" in label:
        return "on uvloop"
    if label in {impl for impl, _ in VARIANTS}:
        return "teaching variants"
    return "echochat"


def figure_of(servers: dict[str, dict[str, Any]]) -> Figure:
    """The latency and memory of each server, from ``raw``'s figures (as saved in the JSON):
    one column of panels per group of servers, the latency over the memory."""
    groups = {name: [label for label in servers if panel(label) == name] for name in PANELS}
    groups = {name: labels for name, labels in groups.items() if labels}
    figure = new_figure(
        f"slow-member: {HEALTHY} members read, 1 never reads, {RATE} msgs/s into one channel",
        width=2.0 + 3.0 * len(groups),
        height=6.5,
    )
    axes_grid = figure.subplots(
        2,
        len(groups),
        sharex=True,
        sharey="row",
        squeeze=False,
        gridspec_kw={"height_ratios": [3, 1]},
    )
    for (name, labels), latency_axes, rss_axes in zip(
        groups.items(), axes_grid[0], axes_grid[1], strict=True
    ):
        latency_axes.set_title(name, fontsize="medium")
        for label in labels:
            looks = style(label)
            series = servers[label]["worst_latency_ms"]
            latency_axes.plot(
                [t for t, _, censored in series if not censored],
                [w for _, w, censored in series if not censored],
                label=label,
                **looks,
            )
            never = [(t, w) for t, w, censored in series if censored]
            if never:
                latency_axes.plot(
                    [t for t, _ in never], [w for _, w in never], **{**looks, "linestyle": ":"}
                )
            rss = servers[label]["rss_growth_mib"]
            rss_axes.plot([t for t, _ in rss], [g for _, g in rss], **looks)
        latency_axes.set_yscale("log")
        latency_axes.grid(True, which="both", alpha=0.3)
        latency_axes.legend(fontsize="x-small", loc="best")
        rss_axes.grid(True, alpha=0.3)
        rss_axes.set_xlabel("message posted at (s)")
    axes_grid[0][0].set_ylabel(
        f"worst member's latency per {BUCKET * 1000:.0f} ms (ms, log)\n"
        "dotted: never arrived (age at end)"
    )
    axes_grid[1][0].set_ylabel("server RSS\ngrowth (MiB)")
    return figure


def plot(servers: dict[str, dict[str, Any]], out: Path) -> Path:
    return save_figure(figure_of(servers), out, NAME)


def run(settings: Settings) -> Report:
    selected, notes = cases(settings)
    outcomes: list[Outcome] = []
    for case in selected:
        progress(NAME, f"{case.label}: posting for {timing(settings)[0]} s")
        outcomes.append(measure(case, settings))
    absorbs = {
        "loopback MSS": kernel_absorbs(None),
        f"MSS {STALLED_MSS}": kernel_absorbs(STALLED_MSS),
    }
    figures = {outcome.label: raw(outcome) for outcome in outcomes}
    path = plot(figures, settings.out)
    return Report(
        name=NAME,
        title=(
            f"slow-member: {HEALTHY} healthy members, 1 that never reads, "
            f"{RATE} msgs/s of ~200 bytes into one channel"
        ),
        columns=[
            "server",
            "delivered/sent",
            "p50 ms",
            "p99 ms",
            "max ms",
            "stalled member dropped",
            "RSS growth MiB",
        ],
        rows=[row(label, server) for label, server in figures.items()],
        raw={"kernel_absorbs_bytes": absorbs, "servers": figures},
        notes=[
            *notes,
            "naive-trio, naive-asyncio: teaching servers in echochat/experiments/naive/, not "
            "echochat; a broadcast awaits every recipient in turn.",
            "Latency: from when a message was due (stamped in its text) to its arrival at a "
            "healthy member; quantiles over every (member, message). ≥: some never arrived "
            "and count with their age at the end, so these are lower bounds.",
            "delivered/sent: the fewest messages any healthy member received. Dropped after N: "
            "messages every member had received when QUIT :SendQ exceeded arrived; never: "
            "not within the run.",
            f"The stalled member sets SO_RCVBUF {STALLED_RCVBUF} and TCP_MAXSEG {STALLED_MSS} "
            f"before connecting: with loopback's MSS the server's kernel took "
            f"{absorbs['loopback MSS'] / MiB:.1f} MiB for it before refusing more, with "
            f"{STALLED_MSS} {absorbs[f'MSS {STALLED_MSS}'] / 1024:.0f} KiB.",
            "Every server was warmed by one connection (PING, reply, close) first. RSS growth: "
            "peak during the run minus just before the first message.",
            "Absolute times are noisy on this 2-core machine (client and server share it); the "
            "ratios within one run are the result.",
            f"plot: {path}",
        ],
    )
