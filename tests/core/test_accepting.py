"""The accept pacing policy: which errors pause accepting, and what is logged, exactly once."""

from __future__ import annotations

import errno

import pytest

from echochat.core import AcceptPacer, Retry
from echochat.core.accepting import PAUSE, REMIND_EVERY, RESOURCE_ERRNOS, SETTLED


@pytest.mark.parametrize("code", sorted(RESOURCE_ERRNOS), ids=errno.errorcode.get)
def test_a_resource_error_pauses_and_warns_once_per_episode(code: int) -> None:
    pacer = AcceptPacer()
    first = pacer.failed(code, now=10.0)
    assert first is not None
    assert first.pause == PAUSE
    assert first.warning is not None
    assert first.warning.startswith(f"accept() failed: {errno.errorcode[code]} (")
    assert "not accepting new connections" in first.warning
    assert pacer.pausing
    # Ten retries a second, none of them logged.
    retries = [pacer.failed(code, now=10.0 + 0.1 * i) for i in range(1, 31)]
    assert retries == [Retry(PAUSE)] * 30
    assert pacer.refused == 31
    assert pacer.accepted(now=13.125, queue_empty=True) == (
        "accepting again; 31 accept() calls failed in 3.0 s"
    )
    assert not pacer.pausing
    assert pacer.refused == 0


def test_a_second_episode_is_logged_again_with_its_own_count() -> None:
    pacer = AcceptPacer()
    assert pacer.failed(errno.EMFILE, now=0.0) is not None
    assert pacer.accepted(now=0.5, queue_empty=True) is not None
    again = pacer.failed(errno.ENFILE, now=5.0)
    assert again is not None
    assert again.warning is not None
    assert "ENFILE" in again.warning
    assert pacer.failed(errno.ENFILE, now=5.125) == Retry(PAUSE)
    assert pacer.accepted(now=5.25, queue_empty=True) == (
        "accepting again; 2 accept() calls failed in 0.1 s"
    )
    assert pacer.episodes == 2


def test_connections_accepted_outside_an_episode_log_nothing() -> None:
    pacer = AcceptPacer()
    assert [pacer.accepted(now=float(t), queue_empty=t % 2 == 0) for t in range(5)] == [None] * 5
    assert pacer.episodes == 0


def test_a_long_episode_is_recalled_at_most_once_a_minute() -> None:
    pacer = AcceptPacer()
    warnings = []
    for tick in range(int(150 / PAUSE)):  # 150 s of retries every 100 ms
        retry = pacer.failed(errno.EMFILE, now=tick * PAUSE)
        assert retry is not None
        if retry.warning is not None:
            warnings.append((tick * PAUSE, retry.warning))
    assert len(warnings) == 3
    assert warnings[1][0] == pytest.approx(REMIND_EVERY)
    assert warnings[1][1] == "still not accepting after 60 s: 601 accept() calls failed so far"
    assert warnings[2][0] == pytest.approx(2 * REMIND_EVERY)


@pytest.mark.parametrize("code", [errno.ECONNABORTED, errno.EPROTO, errno.EPERM, errno.ECONNRESET])
def test_an_error_of_one_connection_goes_on_at_once_without_an_episode(code: int) -> None:
    pacer = AcceptPacer()
    assert pacer.failed(code, now=1.0) == Retry(0.0)
    assert not pacer.pausing
    assert pacer.accepted(now=1.5, queue_empty=True) is None


@pytest.mark.parametrize("code", [errno.EBADF, errno.EINVAL, errno.ENOTSOCK, None])
def test_any_other_error_is_not_the_pacers_to_survive(code: int | None) -> None:
    """EBADF or EINVAL mean the listening socket itself is gone: the caller re-raises."""
    pacer = AcceptPacer()
    assert pacer.failed(code, now=1.0) is None
    assert not pacer.pausing


def test_at_the_limit_each_freed_descriptor_does_not_end_the_episode() -> None:
    """One connection in per freed descriptor, then EMFILE again: one episode, not many."""
    pacer = AcceptPacer()
    assert pacer.failed(errno.EMFILE, now=0.0) is not None
    for step in range(1, 8):
        now = step * 0.25
        assert pacer.accepted(now, queue_empty=False) is None
        assert pacer.failed(errno.EMFILE, now=now + 0.0625) == Retry(PAUSE)
    # The queue drained: the episode is over.
    assert (
        pacer.accepted(2.5, queue_empty=True) == "accepting again; 8 accept() calls failed in 1.8 s"
    )
    assert pacer.episodes == 1


def test_an_episode_ends_after_a_settled_second_even_if_connections_keep_queueing() -> None:
    pacer = AcceptPacer()
    assert pacer.failed(errno.EMFILE, now=0.0) is not None
    assert pacer.accepted(0.5, queue_empty=False) is None
    assert pacer.accepted(SETTLED - 0.125, queue_empty=False) is None
    assert pacer.accepted(SETTLED, queue_empty=False) is not None
    assert not pacer.pausing
