"""network: the chat fan-out on one server alone, behind Redis, and split over two servers.

``echochat bench network`` runs the fan-out of ``bench chat`` (members in one
channel, senders with a window, latency read from each message's text, every
delivery checked) in three configurations, on fresh processes each time:

- ``alone``: one server, no Redis;
- ``hop``: one server with ``--redis``, so each message crosses Redis once
  (published, then delivered back) before the server delivers it: the cost
  of the Redis hop alone;
- ``pair``: two servers on one Redis, the members split between them
  (member ``i`` on server ``i % 2``, senders included), so each server runs
  every message and delivers it to its half of the members.

The load generator is this process, outside the servers. Per run it reports
deliveries/s, p50/p99 latency, and the CPU time each server process and
redis-server used per delivery (psutil, from /proc/PID/stat, over the posting
window). On this 2-core machine the servers, Redis and the load generator
share the cores, so deliveries/s depends on how they share them; CPU per
delivery does not, and is the figure to compare configurations by (the
hop's cost is the difference between ``hop`` and ``alone``). The client's
share of a core is reported too: near 1.0 it, not the servers, limits
deliveries/s. So is the CPU other processes took during each run (``other
cores``): figures from a machine shared with other work are indicative only.

The configurations are interleaved, in the opposite order each round; every
server is warmed the same way (``ServerUnderTest.warm_up``), and the load
starts once every server has joined the network (network_servers.join).
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from echochat.bench.chat import (
    DEFAULT_SENDERS,
    DEFAULT_WINDOW,
    FanOut,
    Measured,
    Usage,
    run_fan_out,
)
from echochat.bench.echo import machine_cpu_seconds
from echochat.bench.progress import PhaseProgress
from echochat.experiments import Settings
from echochat.experiments.common import Report, machine, new_figure, save_figure
from echochat.experiments.network_servers import join, start_server
from echochat.launch import ProcessMeter, ServerUnderTest
from echochat.launch_redis import RedisServer

if TYPE_CHECKING:
    from matplotlib.figure import Figure

NAME = "network"
DEFAULT_OUT = Path("build")
DEFAULT_DURATION = 3.0  # seconds of posting per run
SERVER_NAMES = ("one.bench", "two.bench")
REDIS = "redis-server"
# Fixed costs of one run beyond its posting time (Redis, servers, joining, members),
# for the progress's estimate: measured 2.3 s with 100 members on 2 busy cores.
RUN_OVERHEAD_S = 2.5
# Above this share of a core the load generator may be what limits a run.
CLIENT_LIMIT = 0.9
# Above this, in cores, other processes or the hypervisor took CPU during a run.
BUSY_LIMIT = 0.15


@dataclass(frozen=True, slots=True)
class Configuration:
    name: str
    servers: int
    redis: bool
    description: str


CONFIGURATIONS = (
    Configuration("alone", 1, False, "one server, no Redis"),
    Configuration("hop", 1, True, "one server with --redis: the Redis hop alone"),
    Configuration("pair", 2, True, "two servers on one Redis, members split between them"),
)


@dataclass(frozen=True, slots=True)
class Plan:
    """What to run: ``impls`` are the configuration ids of server 1 and server 2."""

    impls: tuple[str, str]
    members: int = 100
    senders: int = DEFAULT_SENDERS
    window: int = DEFAULT_WINDOW
    duration: float = DEFAULT_DURATION
    rounds: int = 5
    transport: str = "tcp"  # how the servers reach Redis: "tcp" (127.0.0.1) or "unix"

    def servers_of(self, configuration: Configuration) -> list[str]:
        return list(self.impls[: configuration.servers])


@dataclass(slots=True)
class NetworkRun:
    """One configuration in one round."""

    configuration: str
    round: int
    servers: list[str]  # the implementation of server 1 (and 2)
    fan_out: FanOut
    usage: dict[str, Usage]  # by process: "server 1", "server 2", "redis-server"
    # Cores' worth of CPU used during the run by processes other than these and
    # the load generator, and taken by the hypervisor (steal): about 0 when quiet.
    other_cores: float
    steal_cores: float

    def cpu_us_per_delivery(self, process: str) -> float:
        return self.usage[process].cpu_s / self.fan_out.deliveries * 1e6

    def total_cpu_us_per_delivery(self) -> float:
        return sum(self.cpu_us_per_delivery(process) for process in self.usage)


def process_names(configuration: Configuration) -> list[str]:
    names = [f"server {number + 1}" for number in range(configuration.servers)]
    return names + ([REDIS] if configuration.redis else [])


@contextmanager
def network(
    configuration: Configuration, plan: Plan
) -> Iterator[tuple[list[ServerUnderTest], dict[str, Measured]]]:
    """The configuration's servers (and Redis), started afresh; stopped on the way out."""
    with ExitStack() as stack:
        impls = plan.servers_of(configuration)
        if not configuration.redis:
            server = stack.enter_context(start_server(impls[0]))
            yield [server], {"server 1": server}
            return
        directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="echochat-")))
        redis = stack.enter_context(RedisServer(directory, tcp=plan.transport == "tcp"))
        servers = [
            stack.enter_context(join(redis, impl, name))
            for impl, name in zip(impls, SERVER_NAMES, strict=False)
        ]
        measured: dict[str, Measured] = {
            f"server {number + 1}": server for number, server in enumerate(servers)
        }
        measured[REDIS] = ProcessMeter(redis.pid)
        yield servers, measured


def run_one(configuration: Configuration, plan: Plan, round_number: int) -> NetworkRun:
    with network(configuration, plan) as (servers, measured):
        busy, steal = machine_cpu_seconds()
        ours = sum(process.cpu_seconds() for process in measured.values()) + time.process_time()
        started = time.monotonic()
        fan_out, usage = run_fan_out(
            servers,
            measured,
            plan.members,
            senders=plan.senders,
            duration=plan.duration,
            window=plan.window,
        )
        elapsed = time.monotonic() - started
        busy_now, steal_now = machine_cpu_seconds()
        ours_now = sum(process.cpu_seconds() for process in measured.values())
        ours_now += time.process_time()
    return NetworkRun(
        configuration=configuration.name,
        round=round_number,
        servers=[server.label for server in servers],
        fan_out=fan_out,
        usage=usage,
        other_cores=round(max(0.0, (busy_now - busy) - (ours_now - ours)) / elapsed, 3),
        steal_cores=round((steal_now - steal) / elapsed, 3),
    )


def run(plan: Plan) -> list[NetworkRun]:
    """Every configuration once per round, in the opposite order each round."""
    parts = {c.name: float(plan.rounds) for c in CONFIGURATIONS}
    seconds = plan.rounds * len(CONFIGURATIONS) * (plan.duration + RUN_OVERHEAD_S)
    title = (
        f"network: {len(CONFIGURATIONS)} configurations x {plan.rounds} rounds of "
        f"{plan.duration:g} s, {plan.members} members; about {seconds / 60:.1f} min"
    )
    runs: list[NetworkRun] = []
    with PhaseProgress(title, parts) as progress:
        for round_number in range(plan.rounds):
            order = CONFIGURATIONS if round_number % 2 == 0 else CONFIGURATIONS[::-1]
            for configuration in order:
                result = run_one(configuration, plan, round_number)
                runs.append(result)
                progress.log(f"round {round_number + 1}: {describe(result)}")
                progress.advance(configuration.name, 1.0, f"round {round_number + 1}")
    return runs


def describe(result: NetworkRun) -> str:
    fan_out = result.fan_out
    cpu = ", ".join(
        f"{process} {result.cpu_us_per_delivery(process):.2f}" for process in result.usage
    )
    return (
        f"{result.configuration} ({' + '.join(result.servers)}): "
        f"{fan_out.deliveries_per_s:,.0f} deliveries/s, p50 {fan_out.p50_ms:.1f} ms, "
        f"p99 {fan_out.p99_ms:.1f} ms; CPU µs/delivery: {cpu}; "
        f"client {fan_out.client_cpu_share:.0%} of a core"
    )


@dataclass(slots=True)
class Summary:
    """One configuration over its rounds: medians, with the range of deliveries/s."""

    configuration: Configuration
    servers: list[str]
    deliveries_per_s: float
    deliveries_per_s_min: float
    deliveries_per_s_max: float
    p50_ms: float
    p99_ms: float
    cpu_us_per_delivery: dict[str, float]  # by process, and "total"
    client_cpu_share: float  # the largest of the rounds
    other_cores: float  # the largest of the rounds, steal included


def summarise(runs: Sequence[NetworkRun]) -> list[Summary]:
    summaries = []
    for configuration in CONFIGURATIONS:
        mine = [run for run in runs if run.configuration == configuration.name]
        if not mine:
            continue
        rates = [run.fan_out.deliveries_per_s for run in mine]
        cpu = {
            process: statistics.median(run.cpu_us_per_delivery(process) for run in mine)
            for process in process_names(configuration)
        }
        cpu["total"] = statistics.median(run.total_cpu_us_per_delivery() for run in mine)
        summaries.append(
            Summary(
                configuration=configuration,
                servers=mine[0].servers,
                deliveries_per_s=statistics.median(rates),
                deliveries_per_s_min=min(rates),
                deliveries_per_s_max=max(rates),
                p50_ms=statistics.median(run.fan_out.p50_ms for run in mine),
                p99_ms=statistics.median(run.fan_out.p99_ms for run in mine),
                cpu_us_per_delivery=cpu,
                client_cpu_share=max(run.fan_out.client_cpu_share for run in mine),
                other_cores=max(run.other_cores + run.steal_cores for run in mine),
            )
        )
    return summaries


COLUMNS = ["configuration", "servers", "deliveries/s (range)", "p50 ms", "p99 ms",
           "CPU µs/delivery: server 1", "server 2", "redis-server", "total",
           "client CPU", "other cores"]  # fmt: skip


def table_rows(summaries: Sequence[Summary]) -> list[list[str]]:
    rows = []
    for summary in summaries:
        cpu = summary.cpu_us_per_delivery
        rows.append(
            [
                summary.configuration.name,
                ", ".join(summary.servers),
                f"{summary.deliveries_per_s:,.0f} ({summary.deliveries_per_s_min:,.0f}-"
                f"{summary.deliveries_per_s_max:,.0f})",
                f"{summary.p50_ms:.2f}",
                f"{summary.p99_ms:.2f}",
                *(
                    f"{cpu[process]:.2f}" if process in cpu else "-"
                    for process in ("server 1", "server 2", REDIS, "total")
                ),
                f"{summary.client_cpu_share:.0%}",
                f"{summary.other_cores:.2f}",
            ]
        )
    return rows


def title(plan: Plan) -> str:
    return (
        f"Chat fan-out, {plan.members} members in one channel, {plan.senders} senders with a "
        f"window of {plan.window}, {plan.duration:g} s per run, medians of {plan.rounds} "
        f"interleaved rounds; Redis over {plan.transport}"
    )


def notes(summaries: Sequence[Summary]) -> list[str]:
    """The Redis hop's cost, what two servers change, and whether the figures can be trusted."""
    by_name = {summary.configuration.name: summary for summary in summaries}
    lines = [
        f"{summary.configuration.name}: {summary.configuration.description}"
        for summary in summaries
    ]
    alone, hop, pair = (by_name.get(name) for name in ("alone", "hop", "pair"))
    if alone is not None and hop is not None:
        added = hop.cpu_us_per_delivery["total"] - alone.cpu_us_per_delivery["total"]
        lines.append(
            f"The Redis hop: {added:+.2f} µs CPU per delivery in all "
            f"({hop.cpu_us_per_delivery['server 1'] - alone.cpu_us_per_delivery['server 1']:+.2f}"
            f" in the server, {hop.cpu_us_per_delivery[REDIS]:.2f} in redis-server), "
            f"p50 {hop.p50_ms - alone.p50_ms:+.2f} ms, deliveries/s "
            f"x{hop.deliveries_per_s / alone.deliveries_per_s:.2f}."
        )
    if alone is not None and pair is not None:
        lines.append(
            f"Two servers: deliveries/s x{pair.deliveries_per_s / alone.deliveries_per_s:.2f} "
            f"of one alone, CPU per delivery in all x"
            f"{pair.cpu_us_per_delivery['total'] / alone.cpu_us_per_delivery['total']:.2f}, "
            f"p50 {pair.p50_ms - alone.p50_ms:+.2f} ms."
        )
    lines.append(
        "CPU µs/delivery: each process's CPU time over the posting window, divided by every "
        "delivery to every member. On 2 cores the processes share the cores, so compare "
        "configurations by CPU per delivery; deliveries/s also depends on who else runs."
    )
    for summary in summaries:
        if summary.client_cpu_share >= CLIENT_LIMIT:
            lines.append(
                f"WARNING: in {summary.configuration.name} the load generator used "
                f"{summary.client_cpu_share:.0%} of a core: it may be what limits deliveries/s."
            )
    if busy := [s.configuration.name for s in summaries if s.other_cores > BUSY_LIMIT]:
        lines.append(
            f"BUSY MACHINE: other processes (or the hypervisor) took up to "
            f"{max(s.other_cores for s in summaries):.2f} cores during {', '.join(busy)}: "
            "read these figures as indicative only."
        )
    return lines


def busy(summaries: Sequence[Summary]) -> bool:
    return any(summary.other_cores > BUSY_LIMIT for summary in summaries)


def report(plan: Plan, runs: Sequence[NetworkRun], load: tuple[float, float]) -> Report:
    """The table for people, and every run's figures for the JSON."""
    summaries = summarise(runs)
    return Report(
        name=NAME,
        title=title(plan),
        columns=COLUMNS,
        rows=table_rows(summaries),
        raw={
            "busy": busy(summaries),
            "load_average_1min": {"before": load[0], "after": load[1]},
            "plan": asdict(plan),
            "runs": [asdict(run) for run in runs],
        },
        notes=notes(summaries),
    )


def figure(plan: Plan, runs: Sequence[NetworkRun]) -> Figure:
    """Deliveries/s, latency and CPU per delivery by process, per configuration."""
    summaries = summarise(runs)
    heading = f"Chat fan-out: one server, behind Redis, and two ({' + '.join(plan.impls)})"
    if busy(summaries):
        heading += " [BUSY MACHINE: indicative only]"
    chart = new_figure(heading, width=12.0, height=4.5)
    rate_axes, latency_axes, cpu_axes = chart.subplots(1, 3)
    names = [summary.configuration.name for summary in summaries]
    positions = list(range(len(summaries)))
    rate_axes.bar(positions, [s.deliveries_per_s for s in summaries], color="C0", alpha=0.7)
    for position, name in zip(positions, names, strict=True):
        rates = [run.fan_out.deliveries_per_s for run in runs if run.configuration == name]
        rate_axes.plot([position] * len(rates), rates, "k.", ms=4)
    rate_axes.set_ylabel("deliveries/s (bar: median; dots: rounds)")
    width = 0.38
    latency_axes.bar(
        [p - width / 2 for p in positions], [s.p50_ms for s in summaries], width, label="p50"
    )
    latency_axes.bar(
        [p + width / 2 for p in positions], [s.p99_ms for s in summaries], width, label="p99"
    )
    latency_axes.set_ylabel("latency, ms (medians of rounds)")
    latency_axes.legend(fontsize="small")
    bottoms = [0.0] * len(summaries)
    labels = [f"server {n + 1} ({impl})" for n, impl in enumerate(plan.impls)] + [REDIS]
    for colour, (process, label) in enumerate(
        zip(["server 1", "server 2", REDIS], labels, strict=True)
    ):
        heights = [s.cpu_us_per_delivery.get(process, 0.0) for s in summaries]
        cpu_axes.bar(positions, heights, bottom=bottoms, label=label, color=f"C{colour + 2}")
        bottoms = [bottom + height for bottom, height in zip(bottoms, heights, strict=True)]
    cpu_axes.set_ylabel("CPU µs per delivery (medians)")
    cpu_axes.legend(fontsize="small")
    for axes in (rate_axes, latency_axes, cpu_axes):
        axes.set_xticks(positions, names)
        axes.grid(axis="y", alpha=0.3)
    info = machine()
    chart.supxlabel(
        f"{plan.members} members, {plan.senders} senders, window {plan.window}, "
        f"{plan.duration:g} s x {plan.rounds} rounds, Redis over {plan.transport}; "
        f"{info['cores']} cores, Python {info['python']}; other processes took up to "
        f"{max(s.other_cores for s in summaries):.2f} cores",
        fontsize="small",
    )
    return chart


def run_and_report(plan: Plan, out: Path) -> str:
    """Run the plan, save the JSON and the figure into ``out``; the table and what was written."""
    load_before = os.getloadavg()[0]
    runs = run(plan)
    result = report(plan, runs, (load_before, os.getloadavg()[0]))
    paths = [
        result.save_json(out, Settings(out=out)),
        save_figure(figure(plan, runs), out, NAME),
    ]
    return result.table() + "written: " + ", ".join(map(str, paths))
