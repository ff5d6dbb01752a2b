"""``echochat bench``: one load against one implementation, the matrix, or the comparison."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from echochat.bench import layers, storm, tls, versions
from echochat.bench.chat import run_chat
from echochat.bench.contract import run_contract_suite
from echochat.bench.echo import (
    DEFAULT_DURATION,
    MINIMAL,
    measure,
    start_echochat,
    start_minimal,
)
from echochat.bench.echo_cpu import ECHO_CPU_SIZE, report, run_echo_cpu
from echochat.bench.idle import run_idle
from echochat.bench.matrix import (
    DOCS_PAGE,
    FULL,
    QUICK,
    print_tables,
    run_matrix,
    save,
    summarise_contract,
    update_docs_page,
)
from echochat.bench.native import ClientChoice, load_generator
from echochat.experiments import Settings
from echochat.launch import ServerUnderTest
from echochat.registry import CONTRACT_CONFIGURATIONS

DEFAULT_ECHO_SIZE = 1024
COMPARE_OUT = Path("build/compare")
MATRIX_OUT = Path("build/bench")
# Only `bench matrix --docs` (make bench) writes the figures the docs show.
DOCS_FIGURES = Path("docs/figures")


def run_bench(args: argparse.Namespace) -> int:
    """Run what ``echochat bench KIND`` asks for; the exit status."""
    return RUNNERS[args.kind](args)


def run_compare(args: argparse.Namespace) -> int:
    out = args.out or COMPARE_OUT
    outcomes = run_contract_suite(Path.cwd(), out, args.contract_filter)
    print(summarise_contract(outcomes, list(CONTRACT_CONFIGURATIONS)), flush=True)
    print(f"pytest's output, with any failure's details: {out / 'contract.log'}", flush=True)
    if args.contract_only:
        return 0
    return report_matrix(quick=True, out=out, docs=False, client=args.client)


def run_matrix_command(args: argparse.Namespace) -> int:
    out = args.out or (DOCS_FIGURES if args.docs else MATRIX_OUT)
    return report_matrix(quick=args.quick, out=out, docs=args.docs, client=args.client)


def run_echo_cpu_command(args: argparse.Namespace) -> int:
    client, note = load_generator(args.client)
    print(note, file=sys.stderr)
    size = args.size or ECHO_CPU_SIZE
    cells = run_echo_cpu(
        client,
        size=size,
        rounds=args.rounds,
        duration=args.duration or DEFAULT_DURATION,
        trace=args.strace,
    )
    print(report(cells, size))
    return 0


def run_storm(args: argparse.Namespace) -> int:
    settings = Settings(quick=args.quick, out=args.out or storm.DEFAULT_OUT)
    storm_report = storm.run(settings)
    print(storm_report.table())
    paths = storm.save(storm_report, settings.out, settings)
    print("written: " + ", ".join(str(path) for path in paths))
    return 0


def run_layers(args: argparse.Namespace) -> int:
    rounds = layers.QUICK_ROUNDS if args.quick else args.rounds
    document = layers.run(rounds, args.client)
    out = args.out or layers.DEFAULT_OUT
    paths = layers.save(document, out)
    print(layers.summary(document))
    print("written: " + ", ".join(str(path) for path in paths))
    return 0


def run_versions(args: argparse.Namespace) -> int:
    """This checkout against ``--against``: the table to stdout, the JSON to ``--out``."""
    base = versions.base_tree(args.against, args.against_python)
    this = versions.this_tree(args.serve_option or ())
    settings = versions.Settings(
        impls=args.impls,
        rounds=args.rounds,
        seconds=args.duration or versions.DEFAULT_SECONDS,
        members=args.members,
        client=args.client,
    )
    document = versions.run(base, this, settings)
    print(versions.table(document), flush=True)
    print(f"written: {versions.save(document, args.out or versions.DEFAULT_OUT)}")
    return 0


def run_tls(args: argparse.Namespace) -> int:
    rounds, seconds = tls.QUICK if args.quick else (args.rounds, tls.ECHO_SECONDS)
    matrix = tls.run(rounds, seconds, args.client)
    paths = tls.save(matrix, args.out or tls.DEFAULT_OUT)
    print(tls.summary(matrix))
    print("written: " + ", ".join(str(path) for path in paths))
    return 0


def run_echo(args: argparse.Namespace) -> int:
    starts = [
        lambda: start_echochat(args.impl, args.loop),
        lambda: start_minimal(MINIMAL[args.impl], args.loop),
    ]
    client, note = load_generator(args.client)
    print(note, file=sys.stderr)
    size = args.size or DEFAULT_ECHO_SIZE
    duration = args.duration or DEFAULT_DURATION
    results = measure(starts, [size], args.concurrency, duration, client=client)
    print(json.dumps([asdict(result) for result in results], indent=2))
    return 0


def run_members(args: argparse.Namespace) -> int:
    """``chat`` (a channel's fan-out) or ``idle`` (connected clients' memory)."""
    with ServerUnderTest.echochat(args.impl, "chat", loop=args.loop) as server:
        result = (
            run_chat(server, args.members)
            if args.kind == "chat"
            else run_idle(server, args.clients)
        )
    print(json.dumps(asdict(result), indent=2))
    return 0


RUNNERS: dict[str, Callable[[argparse.Namespace], int]] = {
    "compare": run_compare,
    "matrix": run_matrix_command,
    "echo-cpu": run_echo_cpu_command,
    "storm": run_storm,
    "layers": run_layers,
    "versions": run_versions,
    "tls": run_tls,
    "echo": run_echo,
    "chat": run_members,
    "idle": run_members,
}


def report_matrix(quick: bool, out: Path, docs: bool, client: ClientChoice) -> int:
    matrix = run_matrix(QUICK if quick else FULL, client)
    print_tables(matrix)
    paths = save(matrix, out)
    if docs:
        update_docs_page((out / "bench-summary.md").read_text(), DOCS_PAGE)
        paths.append(DOCS_PAGE)
    print("written: " + ", ".join(str(path) for path in paths))
    return 0
