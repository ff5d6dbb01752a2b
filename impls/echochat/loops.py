"""The event loop an implementation on asyncio runs on, for ``--loop``.

Apart from options.py, so that only the code that runs on asyncio imports it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from echochat.registry import EventLoop


def asyncio_loop_factory(loop: EventLoop) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The event loop to run asyncio on: the standard one (None) or uvloop's."""
    if loop == "uvloop":
        import uvloop  # noqa: PLC0415  (an optional extra: imported only when asked for)

        return uvloop.new_event_loop
    return None
