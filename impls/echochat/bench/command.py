"""``echochat bench``: one load against one implementation, the matrix, or the comparison."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

from echochat.bench import storm
from echochat.bench.chat import run_chat
from echochat.bench.contract import run_contract_suite
from echochat.bench.echo import MINIMAL, measure, start_echochat, start_minimal
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
from echochat.experiments import DEFAULT_OUT, Settings
from echochat.launch import ServerUnderTest
from echochat.registry import CONTRACT_CONFIGURATIONS

COMPARE_OUT = Path("build/compare")


def run_bench(args: argparse.Namespace) -> int:
    if args.kind == "compare":
        outcomes = run_contract_suite(Path.cwd())
        print(summarise_contract(outcomes, list(CONTRACT_CONFIGURATIONS)), flush=True)
        return report_matrix(quick=True, out=args.out or COMPARE_OUT, docs=False)
    if args.kind == "matrix":
        return report_matrix(
            quick=args.quick, out=args.out or DEFAULT_OUT, docs=args.out is None and not args.quick
        )
    if args.kind == "storm":
        settings = Settings(quick=args.quick, out=args.out or storm.DEFAULT_OUT)
        report = storm.run(settings)
        print(report.table())
        paths = storm.save(report, settings.out, settings)
        print("written: " + ", ".join(str(path) for path in paths))
        return 0
    if args.kind == "echo":
        starts = [
            lambda: start_echochat(args.impl, args.loop),
            lambda: start_minimal(MINIMAL[args.impl], args.loop),
        ]
        results = measure(starts, [args.size], args.concurrency, args.duration)
        print(json.dumps([asdict(result) for result in results], indent=2))
        return 0
    with ServerUnderTest.echochat(args.impl, "chat", loop=args.loop) as server:
        result = (
            run_chat(server, args.members)
            if args.kind == "chat"
            else run_idle(server, args.clients)
        )
    print(json.dumps(asdict(result), indent=2))
    return 0


def report_matrix(quick: bool, out: Path, docs: bool) -> int:
    matrix = run_matrix(QUICK if quick else FULL)
    print_tables(matrix)
    paths = save(matrix, out)
    if docs:
        update_docs_page((out / "bench-summary.md").read_text(), DOCS_PAGE)
        paths.append(DOCS_PAGE)
    print("written: " + ", ".join(str(path) for path in paths))
    return 0
