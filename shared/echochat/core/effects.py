"""What the core asks an adapter to do: the core's only output.

The chat core never touches a socket. Each call into it returns a list of
effects, in the order the adapter must carry them out for any one connection.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

ConnId = int


class LinkRole(Enum):
    """Which of a server's two connections to Redis (``--redis``) bytes are for or from."""

    SUBSCRIBER = "subscriber"
    COMMANDS = "commands"


@dataclass(frozen=True, slots=True)
class Send:
    """Queue ``data`` (one or more whole lines) for connection ``conn``.

    The adapter must not wait for the peer here: it appends to that
    connection's outbound queue and reports the bytes back with
    ``ChatCore.data_sent`` once they have left the queue.
    """

    conn: ConnId
    data: bytes


@dataclass(frozen=True, slots=True)
class Close:
    """Close connection ``conn``; the core has already forgotten it.

    With ``flush`` the adapter sends everything queued, then ``farewell``,
    then closes (within ``CLOSE_GRACE``). Without ``flush`` (SendQ exceeded)
    the queue is dropped, and ``farewell`` follows within ``CLOSE_GRACE``
    unless a send was cut off half-way (it would end a partial line).
    """

    conn: ConnId
    farewell: bytes
    flush: bool
    # Why, in a few words ("SendQ exceeded", "Quit: bye", "Connection closed"),
    # for the server's log. Not part of what the adapter does, so two closes
    # that act alike compare equal whatever their reasons.
    reason: str = field(default="", compare=False)


@dataclass(frozen=True, slots=True)
class LinkSend:
    """Queue ``data`` for one of the two connections to Redis (``--redis``).

    Like ``Send``, never waits: the link's writer reports the bytes back with
    ``ChatCore.link_data_sent``.
    """

    role: LinkRole
    data: bytes


@dataclass(frozen=True, slots=True)
class CloseLink:
    """Close both connections to Redis; the core has already gone on without them.

    With ``flush`` (shutdown) what is queued for Redis goes out first, within
    ``CLOSE_GRACE``; without, the link is cut at once.
    """

    reason: str
    flush: bool = False


Effect = Send | Close
LinkEffect = LinkSend | CloseLink
