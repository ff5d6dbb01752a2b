"""redis-subscriber: what a Redis subscriber that stalls gets, per client library.

A network of echochat servers (issue 16) relays chat over Redis pub/sub, so
each server is a subscriber that may stall: a busy event loop, or an
application that awaits something else. Per client kind and per stall, in a
process of its own (redis_subscriber_probe.py) against a private Redis of
this run (echochat.launch_redis): the subscriber subscribes, stalls for S
seconds while a publisher here sends N messages of 1 KiB on its channel at a
steady rate, then reads. Measured: messages received against published,
whether the library raised or reconnected, the subscriber's RSS, and from
Redis's side the subscriber's output buffer (CLIENT LIST omem) and whether
``client-output-buffer-limit pubsub`` cut it (Redis logs every cut).

Redis's default pubsub limit is ``32mb 8mb 60``: a subscriber is cut when its
output buffer reaches 32 MiB, or stays above 8 MiB for 60 s; a small limit
shows the cut at once.

echochat's link is measured as a network does it (``ChatNetwork``): two chat
servers on the private Redis, a ``sender`` on one posting the numbered
messages to a channel, a ``reader`` (the probe process) on the other. The
subscriber is that other server, so its stalls are the server's: ``loop
blocked`` is the server process stopped (SIGSTOP) for the stall, then
continued; ``loop runs`` is the reader not reading while its server runs (the
link never waits on a user: the server's SendQ, not Redis, holds what the
user does not take, and drops the user past ``--sendq``). Measured besides:
what the reader was told (the server's NOTICEs), whether any message was
lost without a word before it (a silent hole), and what the stopped server
logged about its link.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import psutil

from echochat.experiments import Settings
from echochat.experiments.common import MiB, Report, new_figure, progress, save_figure
from echochat.experiments.network_servers import join
from echochat.experiments.redis_subscriber_probe import (
    CLIENT_NAME,
    REQUIRES,
    SEQUENCE_DIGITS,
    SUBSCRIBE_TIMEOUT,
)
from echochat.launch_redis import RedisClient, RedisServer, client_list

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

NAME = "redis-subscriber"
KiB = 1024
# The client kinds in the order of the table; "echochat" is echochat's own
# Redis link, a chat server of a network (ChatNetwork).
ORDER = ["redis-py", "coredis", "echochat"]
STALLS = {"await": "loop runs", "block": "loop blocked"}
# client-output-buffer-limit pubsub: hard, soft, soft seconds.
LIMITS = {"default": "32mb 8mb 60", "small": "1mb 0 0"}
MESSAGE_SIZE = KiB
CHANNEL = "echochat-experiment"
# Messages per write; the publisher reads every batch's replies before the next.
BATCH = 100
SAMPLE_INTERVAL = 0.02
# Published at a steady rate over this share of the stall, so the buffers fill while nothing reads.
PUBLISH_SHARE = 0.8
# echochat's network: the servers (asyncio Streams), the IRC channel, and a line
# long enough for a message of MESSAGE_SIZE with its prefix.
ECHOCHAT_IMPL = "asyncio"
CHAT_CHANNEL = "#echochat-experiment"
CHAT_MAX_LINE = 2 * MESSAGE_SIZE
SENDER_NAME, STALLED_NAME = "sender.experiment", "stalled.experiment"
# What the stopped server logs about its link (hub.py), kept for the report.
_LINK_LOG = re.compile(r"lost the link|dropped the link|joined the network|cannot reach Redis")
# Redis logs each cut as "Client <CLIENT LIST fields> scheduled to be closed ASAP for
# overcoming of output buffer limits." (networking.c, closeClientOnOutputBufferLimitReached).
_CUT = re.compile(
    r"^\d+:M (?P<when>\d\d \w{3} \d{4} [\d:.]+) # Client (?P<fields>.*?) "
    r"(?:scheduled to be )?closed (?:ASAP )?for overcoming of output buffer limits\.$",
    re.MULTILINE,
)


@dataclass(frozen=True, slots=True)
class Plan:
    """How much to publish and how long the subscriber stalls."""

    count: int
    stall: float
    idle: float
    transports: tuple[str, ...]

    @property
    def rate(self) -> float:
        """Messages per second: all of them within PUBLISH_SHARE of the stall."""
        return self.count / (self.stall * PUBLISH_SHARE)

    @property
    def seconds(self) -> float:
        """The most one subscriber may take in all, reading included."""
        return self.stall + 30.0


def plan_for(settings: Settings) -> Plan:
    if settings.quick:
        return Plan(count=3_000, stall=1.0, idle=0.5, transports=("unix",))
    # 40 MiB: above the default hard limit, so a subscriber that never reads is cut there too.
    return Plan(count=40_000, stall=5.0, idle=1.0, transports=("unix", "tcp"))


@dataclass(slots=True)
class Sample:
    """The subscriber seen from Redis (CLIENT LIST) and from the system (RSS)."""

    t: float
    connected: bool
    omem: int
    rss: int


@dataclass(slots=True)
class Cut:
    """One cut Redis logged: when (s since subscribed) and the buffer it had then."""

    t: float
    omem: int
    obl: int
    oll: int


@dataclass(slots=True)
class Run:
    kind: str
    stall: str
    limit: str
    transport: str
    published: int = 0
    delivered: int = 0  # The sum of PUBLISH's replies: copies Redis queued for subscribers.
    published_to_nobody: int = 0
    outcome: dict[str, Any] = field(default_factory=dict)
    resp: str = "?"
    reconnects: int = 0
    cuts: list[Cut] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    rss_baseline: int = 0
    # echochat: what the stopped server logged about its link, in order.
    server_log: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.kind}, {STALLS[self.stall]}"

    def peak_omem(self) -> int:
        return max([s.omem for s in self.samples] + [cut.omem for cut in self.cuts], default=0)

    def rss_growth(self) -> int:
        return max((s.rss for s in self.samples), default=self.rss_baseline) - self.rss_baseline


# One connection in CLIENT LIST, or in the log of a cut: its fields (id, name, sub, omem...).
Entry = dict[str, str]


class Watcher(threading.Thread):
    """Samples the subscriber every SAMPLE_INTERVAL until told to stop."""

    def __init__(
        self, redis: RedisClient, pid: int, start: float, is_subscriber: Callable[[Entry], bool]
    ) -> None:
        super().__init__(daemon=True)
        self.redis = redis
        self.is_subscriber = is_subscriber
        self.process = psutil.Process(pid)
        self.start_time = start
        self.samples: list[Sample] = []
        self.resp = "?"
        self.done = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.done.wait(SAMPLE_INTERVAL):
                self.sample()
        except psutil.NoSuchProcess:
            pass  # The subscriber has exited: nothing left to watch.
        except BaseException as error:  # Reported by stop().
            self.error = error

    def sample(self) -> None:
        mine = [entry for entry in client_list(self.redis) if self.is_subscriber(entry)]
        if mine:
            self.resp = mine[0]["resp"]
        self.samples.append(
            Sample(
                t=time.monotonic() - self.start_time,
                connected=bool(mine),
                omem=sum(int(entry["omem"]) for entry in mine),
                rss=int(self.process.memory_info().rss),
            )
        )

    def stop(self) -> list[Sample]:
        self.done.set()
        self.join(10)
        if self.error is not None:
            raise RuntimeError(f"watching the subscriber failed: {self.error!r}")
        return self.samples


def paced(plan: Plan, send: Callable[[range], None]) -> None:
    """Hand ``send`` the message numbers batch by batch, at plan.rate."""
    started = time.monotonic()
    for first in range(0, plan.count, BATCH):
        # Pacing, not synchronisation: a steady rate, as chat traffic is.
        due = started + first / plan.rate
        if (wait := due - time.monotonic()) > 0:
            time.sleep(wait)
        send(range(first, min(first + BATCH, plan.count)))


def payload(number: int) -> bytes:
    """Message ``number``: its sequence number, padded to MESSAGE_SIZE."""
    return b"%0*d" % (SEQUENCE_DIGITS, number) + b"x" * (MESSAGE_SIZE - SEQUENCE_DIGITS)


class Source(Protocol):
    """Where the messages come from, and which connection in Redis is the subscriber."""

    url: str  # what the probe connects to
    channel: str  # what it subscribes to (or joins)

    def is_subscriber(self, entry: Entry) -> bool: ...

    def watched_pid(self, probe: subprocess.Popen[str]) -> int: ...

    def publish(self, plan: Plan, run: Run) -> None: ...

    def finish(self, run: Run) -> None: ...


class RedisPublisher:
    """PUBLISH on CHANNEL from here; the probe process, a library's client, subscribes."""

    def __init__(self, redis: RedisServer, publisher: RedisClient) -> None:
        self.url = redis.url
        self.channel = CHANNEL
        self.publisher = publisher

    def is_subscriber(self, entry: Entry) -> bool:
        return entry["name"] == CLIENT_NAME

    def watched_pid(self, probe: subprocess.Popen[str]) -> int:
        return probe.pid

    def publish(self, plan: Plan, run: Run) -> None:
        """Tally PUBLISH's replies: how many subscribers Redis queued each message for."""

        def send(numbers: range) -> None:
            self.publisher.send_many(("PUBLISH", CHANNEL, payload(n)) for n in numbers)
            for _ in numbers:
                receivers = self.publisher.read()
                run.published += 1
                run.delivered += receivers
                run.published_to_nobody += receivers == 0

        paced(plan, send)

    def finish(self, run: Run) -> None:
        pass  # Nothing more to collect: Redis's log and CLIENT LIST told it all.


class ChatNetwork:
    """Two echochat servers on the private Redis; the stalled one is the subscriber.

    A ``sender`` on one server posts the numbered messages to CHAT_CHANNEL;
    the probe process is a ``reader`` on the other. Redis's connections that
    exist before the stalled server starts are the other server's and ours:
    every other subscriber connection is the stalled server's, its
    reconnections included.
    """

    def __init__(self, redis: RedisServer, stall: str, stack: contextlib.ExitStack) -> None:
        self.channel = CHAT_CHANNEL
        self.stop_server = stall == "block"
        options = ("--max-line", str(CHAT_MAX_LINE))
        sender_server = stack.enter_context(join(redis, ECHOCHAT_IMPL, SENDER_NAME, *options))
        with redis.client() as ours:
            self.known = {entry["id"] for entry in client_list(ours)}
        self.server = stack.enter_context(join(redis, ECHOCHAT_IMPL, STALLED_NAME, *options))
        # However the run ends, a stopped server is continued, or it could not stop.
        stack.callback(self._continue)
        self.url = f"irc://127.0.0.1:{self.server.port}"
        self.sender = stack.enter_context(
            socket.create_connection(("127.0.0.1", sender_server.port), timeout=SUBSCRIBE_TIMEOUT)
        )
        # JOIN once welcomed: on a network the welcome waits for the user's
        # introduction to come back from Redis, and a JOIN before it is refused.
        self.sender.sendall(b"NICK sender\r\nUSER s 0 * :sender\r\n")
        self._read_to(b" 001 sender :")
        self.sender.sendall(f"JOIN {CHAT_CHANNEL}\r\n".encode())
        self._ping("joined")

    def is_subscriber(self, entry: Entry) -> bool:
        return entry["id"] not in self.known and int(entry.get("sub", "0")) > 0

    def watched_pid(self, probe: subprocess.Popen[str]) -> int:
        return self.server.process.pid

    def publish(self, plan: Plan, run: Run) -> None:
        """Post every message; with ``block``, the server is stopped for the stall."""
        started = time.monotonic()
        if self.stop_server:
            os.kill(self.server.process.pid, signal.SIGSTOP)

        def send(numbers: range) -> None:
            prefix = f"PRIVMSG {CHAT_CHANNEL} :".encode()
            self.sender.sendall(b"".join(prefix + payload(n) + b"\r\n" for n in numbers))
            run.published += len(numbers)

        paced(plan, send)
        if self.stop_server:
            # Pacing again: the stall lasts plan.stall, whatever the publishing took.
            time.sleep(max(0.0, started + plan.stall - time.monotonic()))
            self._continue()
        # The sender's server answers a PING after it has run every line before it,
        # each of which crossed Redis: every message was published.
        self._ping("published")

    def finish(self, run: Run) -> None:
        # Each link is two connections: count links opened again.
        run.reconnects //= 2
        run.server_log = [
            line.split(": ", 1)[-1]
            for line in self.server.stderr().splitlines()
            if _LINK_LOG.search(line)
        ]

    def _continue(self) -> None:
        if self.server.process.poll() is None:
            os.kill(self.server.process.pid, signal.SIGCONT)

    def _ping(self, token: str) -> None:
        """A registered user's PING is answered once every line it sent before has run."""
        self.sender.sendall(f"PING :{token}\r\n".encode())
        self._read_to(f" :{token}\r\n".encode())

    def _read_to(self, marker: bytes) -> None:
        seen = b""
        while marker not in seen:
            data = self.sender.recv(65536)
            if not data:
                raise RuntimeError(f"the sender was disconnected: {seen[-300:]!r}")
            seen = seen[-300:] + data


def subscriber_command(kind: str, source: Source, stall: str, plan: Plan) -> list[str]:
    module = "echochat.experiments.redis_subscriber_probe"
    return [sys.executable, "-m", module, kind, source.url, source.channel,
            "--count", str(plan.count),
            "--stall", str(plan.stall), "--stall-kind", stall, "--idle", str(plan.idle),
            "--seconds", str(plan.seconds)]  # fmt: skip


def connections_received(redis: RedisClient) -> int:
    """Connections Redis has accepted since it started (INFO stats)."""
    info: bytes = redis.command("INFO", "stats")
    match = re.search(rb"^total_connections_received:(\d+)\r$", info, re.MULTILINE)
    if match is None:
        raise RuntimeError(f"no total_connections_received in INFO stats: {info!r}")
    return int(match.group(1))


def cuts_in(log: str, since: float, is_subscriber: Callable[[Entry], bool]) -> list[Cut]:
    """The cuts of our subscriber that Redis logged, with times relative to ``since`` (epoch)."""
    cuts = []
    for match in _CUT.finditer(log):
        fields = dict(item.split("=", 1) for item in match["fields"].split(" "))
        if not is_subscriber(fields):
            continue
        when = datetime.strptime(match["when"], "%d %b %Y %H:%M:%S.%f").timestamp()
        cuts.append(Cut(when - since, int(fields["omem"]), int(fields["obl"]), int(fields["oll"])))
    return cuts


@contextlib.contextmanager
def source_for(kind: str, stall: str, redis: RedisServer) -> Iterator[Source]:
    with contextlib.ExitStack() as stack:
        if kind == "echochat":
            yield ChatNetwork(redis, stall, stack)
        else:
            yield RedisPublisher(redis, stack.enter_context(redis.client()))


def run_one(kind: str, stall: str, limit: str, transport: str, plan: Plan) -> Run:
    run = Run(kind, stall, limit, transport)
    options = ("--client-output-buffer-limit", f"pubsub {LIMITS[limit]}")
    with (
        tempfile.TemporaryDirectory(prefix="echochat-redis-") as directory,
        RedisServer(Path(directory), tcp=transport == "tcp", options=options) as redis,
        redis.client() as counter,
        redis.client() as watcher_connection,
        source_for(kind, stall, redis) as source,
        (Path(directory) / "subscriber.err").open("w+") as stderr,
        subprocess.Popen(
            subscriber_command(kind, source, stall, plan),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        ) as process,
    ):
        assert process.stdin is not None
        try:
            next_line(process, SUBSCRIBE_TIMEOUT + 10, expected="subscribed\n")
            started, started_epoch = time.monotonic(), time.time()
            connections = connections_received(counter)
            watched = source.watched_pid(process)
            run.rss_baseline = psutil.Process(watched).memory_info().rss
            watcher = Watcher(watcher_connection, watched, started, source.is_subscriber)
            watcher.start()
            source.publish(plan, run)
            # Its outcome, once it has read; it then waits for us to stop watching it,
            # so no sample sees its interpreter shutting down.
            outcome = next_line(process, plan.seconds)
            run.samples = watcher.stop()
            process.stdin.close()
            process.wait(10)
        except (RuntimeError, subprocess.TimeoutExpired) as error:
            process.kill()
            stderr.seek(0)
            raise RuntimeError(f"{kind} subscriber: {error}\n{stderr.read()[-2000:]}") from None
        run.outcome = json.loads(outcome)
        run.resp = watcher.resp
        run.reconnects = connections_received(counter) - connections
        run.cuts = cuts_in(redis.log(), started_epoch, source.is_subscriber)
        source.finish(run)
    return run


def next_line(process: subprocess.Popen[str], seconds: float, expected: str | None = None) -> str:
    """The subscriber's next line on stdout; RuntimeError if none within ``seconds``, or if
    it is not ``expected``."""
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], seconds)
    if not ready:
        raise RuntimeError(f"nothing on stdout within {seconds:g} s")
    line = process.stdout.readline()
    if expected is not None and line != expected:
        raise RuntimeError(f"expected {expected!r} on stdout, not {line!r}")
    return line


def available() -> tuple[list[str], list[str]]:
    """The kinds this machine can run, and a line for each it cannot."""
    kinds, missing = [], []
    for kind in ORDER:
        if importlib.util.find_spec(REQUIRES[kind]) is None:
            missing.append(
                f"{kind}: not installed (pip install {REQUIRES[kind]}, or "
                "pip install 'echochat[experiments]')"
            )
        else:
            kinds.append(kind)
    return kinds, missing


def run(settings: Settings) -> Report:
    plan = plan_for(settings)
    kinds, missing = available()
    for line in missing:
        progress(NAME, f"skipped: {line}")
    runs: list[Run] = []
    for transport in plan.transports:
        for limit, setting in LIMITS.items():
            for kind in kinds:
                for stall in STALLS:
                    result = run_one(kind, stall, limit, transport, plan)
                    runs.append(result)
                    progress(
                        NAME,
                        f"{result.label}, pubsub {setting}, {transport}: received "
                        f"{result.outcome['received']:,} of {result.published:,}, "
                        f"cut {len(result.cuts)}x, {result.outcome['ended_by']}",
                    )
    plot = save_figure(draw(runs, plan), settings.out, NAME)
    return Report(
        name=NAME,
        title=(
            f"A Redis subscriber that stalls {plan.stall:g} s while {plan.count:,} messages of "
            f"{MESSAGE_SIZE // KiB} KiB are published"
        ),
        columns=[
            "client",
            "stall",
            "pubsub limit",
            "transport",
            "RESP",
            "received",
            "lost",
            "silently lost",
            "cut by Redis",
            "raised/told",
            "reconnects",
            "peak omem KiB",
            "RSS growth MiB",
        ],
        rows=[row(result) for result in runs],
        raw={
            "plan": {**asdict(plan), "rate": plan.rate, "message_size": MESSAGE_SIZE},
            "limits": LIMITS,
            "missing": missing,
            "runs": [asdict(result) for result in runs],
        },
        notes=notes(plan, missing, plot),
    )


def row(result: Run) -> list[object]:
    return [
        result.kind,
        STALLS[result.stall],
        LIMITS[result.limit],
        result.transport,
        result.resp,
        result.outcome["received"],
        result.published - result.outcome["received"],
        result.outcome["silently_lost"],
        len(result.cuts),
        told(result.outcome),
        result.reconnects,
        result.peak_omem() / KiB,
        result.rss_growth() / MiB,
    ]


def told(outcome: dict[str, Any]) -> str:
    """What the library raised (its class), else the notices the server sent, else "no"."""
    if (error := outcome["error"]) is not None:
        return str(error.split(":", 1)[0].rsplit(".", 1)[-1])
    if notices := outcome["notices"]:
        return f"NOTICE x{len(notices)}"
    return "no"


def notes(plan: Plan, missing: list[str], plot: Path) -> list[str]:
    lines = [
        f"plot: {plot}",
        f"Each row: a fresh private Redis 7 (redis-server, no persistence) and a subscriber "
        f"process; once it has subscribed it stalls {plan.stall:g} s while {plan.count:,} "
        f"numbered {MESSAGE_SIZE // KiB} KiB messages are published at {plan.rate:,.0f}/s, "
        f"then reads until it has them all or none came for {plan.idle:g} s.",
        "loop runs: the application awaits asyncio.sleep(), so a library that reads in a "
        "task of its own goes on reading; loop blocked: time.sleep() in the event loop, so "
        "nothing reads.",
        "cut by Redis: the times Redis logged closing the subscriber for its output buffer "
        "limit; reconnects: connections the subscriber opened after its first (echochat: "
        "links, of two connections each); raised/told: what the library raised while "
        "reading, or the NOTICEs echochat's server sent its user (no: nothing, though it "
        "returned nothing more, or all); silently lost: messages missing with no error or "
        "notice before the next message received (or the end).",
        f"echochat: two {ECHOCHAT_IMPL} chat servers on the Redis, a user of one posting the "
        "messages to a channel through it, a user of the other reading them; that other "
        "server is the subscriber. loop blocked: its process is stopped (SIGSTOP) for the "
        "stall; loop runs: the reading user stalls, its server does not (the link never "
        "waits on a user: the server's SendQ takes what the user does not, and drops the "
        "user past --sendq). RSS growth is the server's. The server's own log of its link "
        "is in the JSON (server_log).",
        "peak omem: the largest output buffer CLIENT LIST (every "
        f"{SAMPLE_INTERVAL * 1000:.0f} ms) or a cut showed (an x in the plot: the buffer "
        "Redis logged as it cut); RSS growth: the subscriber process's peak RSS over its RSS "
        "once subscribed.",
        "Dotted line: the end of the stall. unix: a unix socket; tcp: 127.0.0.1. What the "
        "kernel's socket buffers hold (more on TCP) is neither in omem nor lost when Redis "
        "cuts the connection: the subscriber still reads it before the end of the stream.",
    ]
    lines += [f"not measured: {line}" for line in missing]
    return lines


def draw(runs: list[Run], plan: Plan) -> Figure:
    """Redis's output buffer for the subscriber (top) and its RSS growth (bottom) over time."""
    panels = [(limit, transport) for transport in plan.transports for limit in LIMITS]
    figure = new_figure(
        "A stalled Redis subscriber: Redis's output buffer for it, and its own memory",
        width=4.2 * len(panels),
        height=6.5,
    )
    axes = figure.subplots(2, len(panels), sharex=True, squeeze=False)
    colours = {kind: f"C{n}" for n, kind in enumerate(ORDER)}
    for column, (limit, transport) in enumerate(panels):
        top, bottom = axes[0][column], axes[1][column]
        top.set_title(f"pubsub {LIMITS[limit]}, {transport}", fontsize=9)
        for result in runs:
            if (result.limit, result.transport) != (limit, transport):
                continue
            style = {"color": colours[result.kind], "ls": "-" if result.stall == "await" else "--"}
            times = [s.t for s in result.samples]
            top.plot(times, [s.omem / MiB for s in result.samples], label=result.label, **style)
            for cut in result.cuts:
                top.plot([cut.t], [cut.omem / MiB], "x", color=style["color"], ms=8, mew=2)
            growth = [(s.rss - result.rss_baseline) / MiB for s in result.samples]
            bottom.plot(times, growth, **style)
        stall_end(top, plan)
        stall_end(bottom, plan)
        top.set_ylabel("omem (MiB)" if column == 0 else "")
        bottom.set_ylabel("subscriber RSS growth (MiB)" if column == 0 else "")
        bottom.set_xlabel("seconds since subscribed")
    handles, labels = axes[0][0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside lower center", ncols=4, fontsize=8)
    return figure


def stall_end(axes: Axes, plan: Plan) -> None:
    axes.axvline(plan.stall, color="grey", lw=0.8, ls=":")
    axes.grid(True, alpha=0.3)
