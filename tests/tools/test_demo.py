"""`make demo`: every implementation with a fast and a stalled reader, and a verdict each."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from echochat.registry import IMPLEMENTATIONS

ROOT = Path(__file__).resolve().parents[2]


def test_the_demo_drops_the_stalled_reader_except_without_drain() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "echochat", "demo", "--seconds", "3"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=45,
        check=False,
    )
    out = completed.stdout
    assert completed.returncode == 0, out + completed.stderr
    verdicts = dict(re.findall(r"^(\S+) +(bounded|grows|undecided): ", out, re.M))
    assert set(verdicts) == {impl.name for impl in IMPLEMENTATIONS}, out
    for impl in IMPLEMENTATIONS:
        expected = "bounded" if impl.drain else "grows"
        assert verdicts[impl.name] == expected, out
    assert re.search(r"^asyncio-nodrain +grows: never dropped the stalled reader", out, re.M)
    assert re.search(r"^trio +bounded: dropped the stalled reader after \d+\.\d s", out, re.M)
