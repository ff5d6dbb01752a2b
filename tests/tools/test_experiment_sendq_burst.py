"""The sendq-burst experiment: the fast member's SendQ stays small, the stalled one's fills."""

from __future__ import annotations

from pathlib import Path

import pytest

from echochat.experiments import Settings
from echochat.experiments.sendq_burst import LINES, SENDQ, run

# Its fast member must keep up with the burst, as in tests/contract/test_sendq.py.
pytestmark = pytest.mark.alone


def test_the_fast_member_keeps_up_and_only_the_stalled_member_fills_its_sendq(
    tmp_path: Path,
) -> None:
    report = run(Settings(quick=True, out=tmp_path))
    for impl, result in report.raw.items():
        assert (result["fast_got"], result["fast_ended"]) == (LINES, None), impl
        # What the server counts for a member that keeps up: a few writes' worth.
        assert max(queued for _, queued in result["fast"]) < SENDQ / 2, impl
        if impl == "asyncio-nodrain":
            # Its SendQ empties into the transport's buffer at once: nobody is dropped.
            assert result["stalled_dropped_after"] is None
            assert max(queued for _, queued in result["stalled"]) < SENDQ / 2
        else:
            assert result["stalled_dropped_after"] is not None, impl
            # The stalled member's SendQ reached the limit (within a line): then it was dropped.
            peak = max(queued for _, queued in result["stalled"])
            assert SENDQ - 1024 < peak <= SENDQ, impl
    assert (tmp_path / "sendq-burst.png").stat().st_size > 10_000
