"""The contract-suite summary that ``make compare`` prints: outcomes counted per implementation."""

from __future__ import annotations

from echochat.bench.contract import count_outcomes, implementation_of

JUNIT = """<testsuites><testsuite>
<testcase name="test_names[asyncio]"/>
<testcase name="test_names[anyio-asyncio]"><failure message="boom"/></testcase>
<testcase name="test_signal[SIGINT-anyio-trio]"/>
<testcase name="test_signal[SIGTERM-asyncio+uvloop]"><skipped/></testcase>
<testcase name="test_core_only"/>
<testcase name="test_trap[asyncio-backend]"/>
</testsuite></testsuites>"""


def test_ids_name_their_implementation() -> None:
    assert implementation_of("t[asyncio]") == "asyncio"
    assert implementation_of("t[anyio-asyncio]") == "anyio-asyncio"  # not plain asyncio
    assert implementation_of("t[SIGINT-anyio-trio]") == "anyio-trio"
    assert implementation_of("t[asyncio+uvloop]") == "asyncio+uvloop"
    assert implementation_of("t[asyncio-backend]") is None
    assert implementation_of("t") is None


def test_outcomes_are_counted_per_implementation() -> None:
    outcomes = count_outcomes(JUNIT)
    assert {impl: dict(counts) for impl, counts in outcomes.items()} == {
        "asyncio": {"passed": 1},
        "anyio-asyncio": {"failed": 1},
        "anyio-trio": {"passed": 1},
        "asyncio+uvloop": {"skipped": 1},
    }
