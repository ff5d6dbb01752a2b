"""The matrix's echo table: medians with ranges over rounds, a ✗ that means something, a legend."""

from __future__ import annotations

import re

import pytest

from echochat.bench.echo import CEILING_LABEL, EchoResult, EchoTargets, echo_targets
from echochat.bench.matrix import (
    FULL,
    QUICK,
    RATIO_TARGET,
    Matrix,
    Plan,
    echo_starts,
    minimal_label,
    print_tables,
    summarise_echo,
    summarise_tls,
)

KiB = 1024
PLAN = Plan((1 * KiB,), 0.5, 3, (100,), 100, 10)


def result(label: str, rate: float, cpu_s: float = 0.5) -> EchoResult:
    return EchoResult(
        label=label,
        client="C",
        size=1 * KiB,
        concurrency=10,
        seconds=1.0,
        messages=round(rate),
        verified=round(rate) + 10,
        msgs_per_s=rate,
        mib_per_s=rate / 1024,
        p50_ms=0.1,
        p90_ms=0.2,
        p99_ms=0.3,
        max_ms=0.4,
        server_cpu_s=cpu_s,
        server_cpu_s_per_msg=cpu_s / rate,
        peak_rss_mib=20.0,
        rss_samples=12,
        client_cpu_share=0.3,
        other_busy_cores=0.0,
        steal_cores=0.0,
    )


def matrix_with(rounds: dict[str, list[float]], tls: bool = False) -> tuple[Matrix, EchoTargets]:
    """Every server at 10,000 msgs/s in each round, except those given."""
    targets = echo_targets(tls=tls)
    labels = {row.label for row in targets.rows} | {
        minimal_label(row.label) for row in targets.rows
    }
    if targets.ceiling is not None:
        labels.add(CEILING_LABEL)
    matrix = Matrix(PLAN)
    for label in sorted(labels):
        matrix.raw_echo += [result(label, rate) for rate in rounds.get(label, [10_000.0] * 3)]
    summarise_echo(matrix, targets)
    matrix.tls = summarise_tls(matrix.echo)
    return matrix, targets


def test_rows_quote_medians_with_the_slowest_and_fastest_round() -> None:
    matrix, _ = matrix_with({"trio": [9_000.0, 7_000.0, 8_000.0]})
    row = next(row for row in matrix.echo if row.label == "trio")
    assert (row.msgs_per_s, row.msgs_per_s_min, row.msgs_per_s_max) == (8_000, 7_000, 9_000)
    assert row.ratio == pytest.approx(0.8)
    assert row.rounds == 3
    assert row.client == matrix.client == "C"


def test_a_ratio_under_the_target_is_missed_only_outside_the_noise() -> None:
    matrix, _ = matrix_with(
        {
            # Every round slower than every round of its minimal server: missed.
            "trio": [8_000.0, 8_100.0, 8_200.0],
            "minimal trio": [9_900.0, 10_000.0, 10_100.0],
            # The median under 0.9x, but one round as fast as the minimal's slowest.
            "anyio-trio": [7_000.0, 8_000.0, 9_500.0],
            "minimal anyio-trio": [9_500.0, 10_000.0, 10_500.0],
        }
    )
    verdicts = {row.label: row.verdict for row in matrix.echo}
    assert verdicts["trio"] == "missed"
    assert verdicts["anyio-trio"] == "within noise"
    assert verdicts["asyncio"] == "met"


def test_the_table_is_followed_by_its_legend_and_the_targets(
    capsys: pytest.CaptureFixture[str],
) -> None:
    matrix, targets = matrix_with(
        {
            "trio": [8_000.0, 8_100.0, 8_200.0],
            "anyio-trio": [7_000.0, 8_000.0, 9_500.0],
            "minimal anyio-trio": [9_500.0, 10_000.0, 10_500.0],
        }
    )
    print_tables(matrix)
    out = capsys.readouterr().out
    assert re.search(r"│ trio .*0\.81 ✗", out), out
    assert re.search(r"│ anyio-trio .*0\.80 within noise", out), out
    assert re.search(r"│ trio .*8\.1k \(8\.0-8\.2k\)", out), out
    table_end = out.index("└")
    legend = out[table_end:]
    assert "3 interleaved round(s) of 0.5 s, load generator C (epoll_client.c)" in legend
    assert f"✗            under {RATIO_TARGET}x, and outside the noise" in legend
    assert f"within noise under {RATIO_TARGET}x, but the two servers' rounds overlap" in legend
    assert "Targets (from the issue that asked for this comparison):" in legend
    assert (
        f"- echo at least {RATIO_TARGET}x its minimal server: missed by trio 1 KiB (0.81); "
        "under it but within noise: anyio-trio 1 KiB (0.80)." in legend
    )
    if targets.ceiling is not None:
        assert "Ceiling: the C epoll server at 1 KiB made 10,000 msgs/s" in legend


def test_each_server_is_measured_once_per_round() -> None:
    targets = echo_targets()
    starts = echo_starts(targets)
    labels = {row.label for row in targets.rows} | {
        minimal_label(row.label) for row in targets.rows
    }
    assert len(starts) == len(labels) + (targets.ceiling is not None)


def test_even_the_quick_run_has_rounds_enough_to_show_a_spread() -> None:
    assert QUICK.repeats >= 5
    assert FULL.repeats >= 5


def test_each_tls_row_is_set_beside_its_plain_row(capsys: pytest.CaptureFixture[str]) -> None:
    matrix, _ = matrix_with(
        {
            "trio TLS": [2_000.0, 2_500.0, 3_000.0],
            "minimal trio TLS": [4_000.0] * 3,
            "asyncio-protocol": [20_000.0] * 3,
        },
        tls=True,
    )
    rows = {row.label: row for row in matrix.tls}
    assert "asyncio-sockets" not in rows  # no TLS there
    assert len(rows) == len({row.label for row in matrix.echo if row.label.endswith(" TLS")})
    trio = rows["trio"]
    assert trio.ratio == pytest.approx(0.25)  # 2,500 over TLS / 10,000 plain
    assert trio.minimal_ratio == pytest.approx(0.4)
    # The same 0.5 s of CPU per round over fewer messages: more per message.
    assert trio.plain_cpu_us_per_msg == pytest.approx(50)
    assert trio.tls_cpu_us_per_msg == pytest.approx(200)
    assert trio.cpu_ratio == pytest.approx(4)
    assert trio.client_cpu_us_per_msg == pytest.approx(0.3 / 2_500 * 1e6)
    assert rows["asyncio-protocol"].ratio == pytest.approx(0.5)
    print_tables(matrix)
    out = capsys.readouterr().out
    assert "echo over TLS beside plain TCP" in out
    row = r"│ trio .*│ 1 KiB .*10\.0k .*2\.5k \(2\.0-3\.0k\) .*0\.25 .*0\.40 .*50, 200"
    assert re.search(row, out), out
