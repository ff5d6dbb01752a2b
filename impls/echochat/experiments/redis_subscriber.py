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
"""

from __future__ import annotations

import importlib.util
import json
import re
import select
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil

from echochat.experiments import Settings
from echochat.experiments.common import MiB, Report, new_figure, progress, save_figure
from echochat.experiments.redis_subscriber_probe import (
    CLIENT_NAME,
    KINDS,
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
# Redis link (issue 16), measured once redis_subscriber_probe.KINDS has it.
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

    @property
    def label(self) -> str:
        return f"{self.kind}, {STALLS[self.stall]}"

    def peak_omem(self) -> int:
        return max([s.omem for s in self.samples] + [cut.omem for cut in self.cuts], default=0)

    def rss_growth(self) -> int:
        return max((s.rss for s in self.samples), default=self.rss_baseline) - self.rss_baseline


class Watcher(threading.Thread):
    """Samples the subscriber every SAMPLE_INTERVAL until told to stop."""

    def __init__(self, redis: RedisClient, pid: int, start: float) -> None:
        super().__init__(daemon=True)
        self.redis = redis
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
        mine = [e for e in client_list(self.redis) if e["name"] == CLIENT_NAME]
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


def publish(redis: RedisClient, plan: Plan, run: Run) -> None:
    """Publish plan.count numbered messages at plan.rate, in batches; tally PUBLISH's replies."""
    padding = b"x" * (MESSAGE_SIZE - SEQUENCE_DIGITS)
    started = time.monotonic()
    for first in range(0, plan.count, BATCH):
        # Pacing, not synchronisation: a steady rate, as chat traffic is.
        due = started + first / plan.rate
        if (wait := due - time.monotonic()) > 0:
            time.sleep(wait)
        numbers = range(first, min(first + BATCH, plan.count))
        redis.send_many(
            ("PUBLISH", CHANNEL, b"%0*d" % (SEQUENCE_DIGITS, n) + padding) for n in numbers
        )
        for _ in numbers:
            receivers = redis.read()
            run.published += 1
            run.delivered += receivers
            run.published_to_nobody += receivers == 0


def subscriber_command(kind: str, url: str, stall: str, plan: Plan) -> list[str]:
    module = "echochat.experiments.redis_subscriber_probe"
    return [sys.executable, "-m", module, kind, url, CHANNEL, "--count", str(plan.count),
            "--stall", str(plan.stall), "--stall-kind", stall, "--idle", str(plan.idle),
            "--seconds", str(plan.seconds)]  # fmt: skip


def connections_received(redis: RedisClient) -> int:
    """Connections Redis has accepted since it started (INFO stats)."""
    info: bytes = redis.command("INFO", "stats")
    match = re.search(rb"^total_connections_received:(\d+)\r$", info, re.MULTILINE)
    if match is None:
        raise RuntimeError(f"no total_connections_received in INFO stats: {info!r}")
    return int(match.group(1))


def cuts_in(log: str, since: float) -> list[Cut]:
    """The cuts of our subscriber that Redis logged, with times relative to ``since`` (epoch)."""
    cuts = []
    for match in _CUT.finditer(log):
        fields = dict(item.split("=", 1) for item in match["fields"].split(" "))
        if fields.get("name") != CLIENT_NAME:
            continue
        when = datetime.strptime(match["when"], "%d %b %Y %H:%M:%S.%f").timestamp()
        cuts.append(Cut(when - since, int(fields["omem"]), int(fields["obl"]), int(fields["oll"])))
    return cuts


def run_one(kind: str, stall: str, limit: str, transport: str, plan: Plan) -> Run:
    run = Run(kind, stall, limit, transport)
    options = ("--client-output-buffer-limit", f"pubsub {LIMITS[limit]}")
    with (
        tempfile.TemporaryDirectory(prefix="echochat-redis-") as directory,
        RedisServer(Path(directory), tcp=transport == "tcp", options=options) as redis,
        redis.client() as publisher,
        redis.client() as watcher_connection,
        (Path(directory) / "subscriber.err").open("w+") as stderr,
        subprocess.Popen(
            subscriber_command(kind, redis.url, stall, plan),
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
            connections = connections_received(publisher)
            run.rss_baseline = psutil.Process(process.pid).memory_info().rss
            watcher = Watcher(watcher_connection, process.pid, started)
            watcher.start()
            publish(publisher, plan, run)
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
        run.reconnects = connections_received(publisher) - connections
        run.cuts = cuts_in(redis.log(), started_epoch)
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
        if kind not in KINDS:
            missing.append(
                f"{kind}: its Redis link is not written yet (issue 16); it becomes one "
                "function in redis_subscriber_probe.KINDS"
            )
        elif importlib.util.find_spec(REQUIRES[kind]) is None:
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
            "cut by Redis",
            "raised",
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
    error = result.outcome["error"]
    return [
        result.kind,
        STALLS[result.stall],
        LIMITS[result.limit],
        result.transport,
        result.resp,
        result.outcome["received"],
        result.published - result.outcome["received"],
        len(result.cuts),
        "no" if error is None else error.split(":", 1)[0].rsplit(".", 1)[-1],
        result.reconnects,
        result.peak_omem() / KiB,
        result.rss_growth() / MiB,
    ]


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
        "limit; reconnects: connections the subscriber opened after its first; raised: what "
        "the library raised while reading (no: it returned nothing more, or all).",
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
