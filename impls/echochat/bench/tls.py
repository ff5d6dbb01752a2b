"""tls: what TLS costs each implementation's echo, beside plain TCP.

``echochat bench tls`` is the TLS part of the benchmark matrix on its own:
every implementation that serves TLS (``Implementation.tls``; not
asyncio-sockets), over plain TCP and over TLS, each beside its framework's
minimal server over the same (``echochat.bench.minimal`` with
``--tls-cert``), at 1, 10 and 100 KiB, in interleaved rounds with fresh
servers. The load generator is the C client built with OpenSSL
(``epoll_client.c --tls-ca``): a Python client encrypting and decrypting
every message would be slower than the servers it measures, so without
OpenSSL's headers this refuses to run. Its CPU share and CPU per message are
reported beside the server's, which shows whether it set the pace.
"""

from __future__ import annotations

import json
import os
from collections.abc import Collection
from pathlib import Path

from echochat.bench.echo import SIZES, TLS_SUFFIX, EchoTargets, echo_targets, measure
from echochat.bench.matrix import (
    Matrix,
    Plan,
    echo_document,
    echo_markdown,
    echo_starts,
    summarise_echo,
    summarise_tls,
)
from echochat.bench.native import ClientChoice, choose_load_generator
from echochat.experiments.common import progress
from echochat.registry import parse_configuration

NAME = "tls"
DEFAULT_OUT = Path("build/tls")
ECHO_SECONDS = 1.0  # 36 servers x 3 sizes per round: about 2.5 minutes a round
QUICK = (1, 0.5)  # rounds, seconds


def tls_targets(configurations: Collection[str] | None = None) -> EchoTargets:
    """The matrix's rows of the implementations that serve TLS, plain and TLS, no C ceiling.

    ``configurations``: only these (``trio``, ``asyncio+uvloop``...); None for all.
    """
    targets = echo_targets(tls=True)

    def wanted(label: str) -> bool:
        configuration = label.removesuffix(TLS_SUFFIX)
        implementation, _ = parse_configuration(configuration)
        return implementation.tls and (configurations is None or configuration in configurations)

    return EchoTargets([row for row in targets.rows if wanted(row.label)], None, [])


def run(
    rounds: int,
    seconds: float,
    client: ClientChoice = "auto",
    sizes: tuple[int, ...] = SIZES,
    configurations: Collection[str] | None = None,
) -> Matrix:
    generator, note, speaks_tls = choose_load_generator(client)
    if not speaks_tls:
        raise RuntimeError(f"TLS rows need the C client built with OpenSSL ({note})")
    progress(NAME, note)
    targets = tls_targets(configurations)
    matrix = Matrix(Plan(sizes, seconds, rounds, (), 0, 0, tls=True), notes=[note])
    load_before = os.getloadavg()[0]
    for round_number in range(rounds):
        progress(NAME, f"round {round_number + 1} of {rounds}")
        matrix.raw_echo += measure(echo_starts(targets), sizes, duration=seconds, client=generator)
    summarise_echo(matrix, targets)
    matrix.tls = summarise_tls(matrix.echo)
    ciphers = sorted({result.tls for result in matrix.raw_echo if result.tls})
    matrix.notes.append(
        f"TLS: {', '.join(ciphers)}; 1-minute load average {load_before:.1f} before and "
        f"{os.getloadavg()[0]:.1f} after."
    )
    return matrix


def summary(matrix: Matrix) -> str:
    """The tables docs/performance.md quotes: the echo rows, then TLS beside plain."""
    return "\n".join([*echo_markdown(matrix), "", *matrix.notes]) + "\n"


def save(matrix: Matrix, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    # bench-tls, not tls: docs/figures/tls.json is the tls experiment's.
    raw, table = out / f"bench-{NAME}.json", out / f"bench-{NAME}.md"
    raw.write_text(json.dumps(echo_document(matrix), indent=2) + "\n")
    table.write_text(summary(matrix))
    return [raw, table]
