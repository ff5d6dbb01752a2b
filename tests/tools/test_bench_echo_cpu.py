"""`bench echo-cpu`: the cold-server mmap trap shows in the counts, and warming removes it."""

from __future__ import annotations

import shutil

import pytest

from echochat.bench.echo import run_echo
from echochat.bench.echo_cpu import CONDITIONS, report, run_echo_cpu

KiB = 1024


@pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace (.ci/debian-packages)")
def test_a_cold_asyncio_server_maps_memory_per_message_and_a_warmed_one_does_not() -> None:
    cells = run_echo_cpu(run_echo, size=100 * KiB, rounds=1, duration=0.3, trace=True)
    assert {name for name, _ in cells} == {condition.name for condition in CONDITIONS}
    mmaps = {key: cell.calls_per_msg["mmap"] for key, cell in cells.items()}
    for (name, label), per_message in mmaps.items():
        assert len(cells[(name, label)].runs) == 1, (name, label)
        if name == "cold, glibc default":
            # recv(256 KiB) above the 128 KiB threshold: a mapping for every read,
            # and a 100 KiB message takes one read or several, as TCP cuts it
            # (0.2 to 1.0 a message seen here).
            assert per_message > 0.1, (name, label, per_message)
        elif name == "warmed, glibc default":
            # Warmed by the load and an EOF: fewer reads mapped than cold (0 to
            # 0.53 a message seen for the minimal server, whose start leaves a heap
            # glibc may serve the warm-up's buffer from; about 1 cold).
            assert per_message < mmaps[("cold, glibc default", label)], (label, mmaps)
        else:
            # A fixed threshold turns the dynamic one off: every read from the heap.
            assert per_message < 0.05, (name, label, per_message)
    text = report(cells, 100 * KiB)
    assert text.count("echochat/minimal: msgs/s") == len(CONDITIONS)
