"""What to do when accept() fails, and when to say so: the accept pacing policy.

Every adapter's accept loop hands each failed ``accept()``'s errno and each
accepted connection to an ``AcceptPacer`` with the time, and carries out its
answer: wait that long before the next ``accept()``, log that text. The policy
is the same for every framework, so it lives here, with no I/O and no clock.

When a process runs out of descriptors (or the system of memory or buffers),
``accept()`` fails and leaves the connection queued in the kernel, and the
listening socket stays readable: accepting again at once would spin. So the
loop pauses, as trio's ``serve_listeners`` does (100 ms), while the
connections already open are served as before; it says so once when the
episode starts and once when it ends, with the count of failed attempts,
instead of once per attempt (asyncio and trio log a traceback per attempt:
docs/sidebyside/running-out.md).
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass

# The process or the system is out of something; the connection stays queued.
# The set trio (ACCEPT_CAPACITY_ERRNOS, trio/_highlevel_serve_listeners.py) and
# asyncio (BaseSelectorEventLoop._accept_connection, Lib/asyncio/selector_events.py)
# both treat as "pause and retry".
RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
# Only that one connection failed (reset or refused before it was accepted):
# accept the next one. trio's SocketListener.accept() skips these itself
# (_ignorable_accept_errno_names, trio/_highlevel_socket.py); asyncio's
# sock_accept() raises them.
PER_CONNECTION_ERRNOS = frozenset(
    getattr(errno, name)
    for name in (
        "ECONNABORTED",
        "EPROTO",
        "EPERM",
        "ECONNRESET",
        "ETIMEDOUT",
        "ENETDOWN",
        "ENETUNREACH",
        "EHOSTDOWN",
        "EHOSTUNREACH",
        "ENONET",
        "ENOPROTOOPT",
        "EOPNOTSUPP",
    )
    if hasattr(errno, name)
)
# How long to wait before trying again: trio's SLEEP_TIME. asyncio waits 1 s
# (ACCEPT_RETRY_DELAY, Lib/asyncio/constants.py); a tenth of that lets new
# clients in soon after descriptors are free, at ten failed calls a second.
PAUSE = 0.1
# While connections keep coming, an episode ends after this long without a
# resource error, even if the accept queue never empties.
SETTLED = 1.0
# A long episode is logged again at most this often, with the count so far.
REMIND_EVERY = 60.0


@dataclass(frozen=True, slots=True)
class Retry:
    """Wait ``pause`` seconds, then accept again; log ``warning`` first if it is not None."""

    pause: float
    warning: str | None = None


class AcceptPacer:
    """One listening socket's accept pacing: an episode starts at a resource error
    and ends when connections are accepted again (``accepted``)."""

    def __init__(self) -> None:
        self.refused = 0  # failed accept() calls in the episode in progress
        self.episodes = 0
        self._started: float | None = None
        self._reminded = 0.0
        self._failed = 0.0  # when accept() last failed for want of resources

    @property
    def pausing(self) -> bool:
        """True from a resource error until a connection is accepted again."""
        return self._started is not None

    def failed(self, code: int | None, now: float) -> Retry | None:
        """``accept()`` failed with errno ``code`` at ``now``: when to try again, and what
        to log. None: not an accept problem the loop should survive (the caller re-raises)."""
        if code in PER_CONNECTION_ERRNOS:
            return Retry(0.0)
        if code not in RESOURCE_ERRNOS:
            return None
        self.refused += 1
        self._failed = now
        if self._started is None:
            self._started = self._reminded = now
            self.episodes += 1
            return Retry(
                PAUSE,
                f"accept() failed: {errno.errorcode[code]} ({os.strerror(code)}); "
                f"not accepting new connections, trying again every {PAUSE:g} s; "
                "connected clients are still served",
            )
        if now - self._reminded >= REMIND_EVERY:
            self._reminded = now
            return Retry(
                PAUSE,
                f"still not accepting after {now - self._started:.0f} s: "
                f"{_calls_failed(self.refused)} so far",
            )
        return Retry(PAUSE)

    def accepted(self, now: float, queue_empty: bool) -> str | None:
        """A connection was accepted at ``now``: the text to log if that ends an episode.

        It ends the episode once nothing more waits in the accept queue
        (``queue_empty``), or after ``SETTLED`` seconds without a resource error
        while connections keep coming. Not sooner: while the process is at its
        limit, each descriptor freed lets exactly one queued connection in and
        the next accept() fails again, and ending the episode at each of those
        would log two lines per freed descriptor.
        """
        if self._started is None:
            return None
        if not queue_empty and now - self._failed < SETTLED:
            return None
        text = (
            f"accepting again; {_calls_failed(self.refused)} "
            f"in {self._failed - self._started:.1f} s"
        )
        self._started = None
        self.refused = 0
        return text


def _calls_failed(count: int) -> str:
    return f"{count} accept() call{'' if count == 1 else 's'} failed"
