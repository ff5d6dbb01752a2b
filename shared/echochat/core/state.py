"""What the chat core remembers: clients, channels, and the modes that govern them, as data.

Nothing here sends anything. The mode tables drive both what the server
advertises (004, 005 CHANMODES and PREFIX) and how ``MODE`` reads its
arguments, so the two cannot disagree. Every check on the PRIVMSG path is a
set or attribute lookup: who is banned is worked out when a ban, a member or a
nick changes, not each time someone speaks.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, field
from enum import Enum

from echochat.core.effects import ConnId
from echochat.core.framing import FrameEvent, LineFramer
from echochat.core.message import ascii_lower

Seconds = float
"""A reading of the adapter's monotonic clock; the core only compares and subtracts them."""

UnixTime = float
"""Wall-clock seconds since the epoch, for replies that show a date (333, 329, 317, TIME)."""


class ModeKind(Enum):
    """How a channel mode takes its argument: the kinds of 005 ``CHANMODES`` and ``PREFIX``."""

    MEMBER = "prefix"  # A nick on the channel: +o, +v.
    LIST = "A"  # A mask added to or removed from a list; no argument lists it: +b.
    ALWAYS = "B"  # An argument to set and to unset: +k.
    WHEN_SET = "C"  # An argument to set only: +l.
    FLAG = "D"  # No argument: +imnst.


CHANNEL_MODES: dict[str, ModeKind] = {
    "o": ModeKind.MEMBER,
    "v": ModeKind.MEMBER,
    "b": ModeKind.LIST,
    "k": ModeKind.ALWAYS,
    "l": ModeKind.WHEN_SET,
    "i": ModeKind.FLAG,
    "m": ModeKind.FLAG,
    "n": ModeKind.FLAG,
    "s": ModeKind.FLAG,
    "t": ModeKind.FLAG,
}
# Highest rank first: NAMES and WHO show the highest a member has.
MEMBER_PREFIXES = {"o": "@", "v": "+"}
NEW_CHANNEL_MODES = frozenset("nt")
USER_MODES = "iow"  # invisible, IRC operator (only through OPER), wallops.


def chanmodes_token() -> str:
    """The 005 CHANMODES value, read from the table: ``b,k,l,imnst``."""
    kinds = (ModeKind.LIST, ModeKind.ALWAYS, ModeKind.WHEN_SET, ModeKind.FLAG)
    return ",".join(
        "".join(sorted(m for m, kind in CHANNEL_MODES.items() if kind is want)) for want in kinds
    )


def prefix_token() -> str:
    """The 005 PREFIX value: ``(ov)@+``."""
    return f"({''.join(MEMBER_PREFIXES)}){''.join(MEMBER_PREFIXES.values())}"


def normalise_mask(mask: str) -> str:
    """Complete a ban mask to ``nick!user@host`` as servers do: ``bob`` is ``bob!*@*``."""
    if "!" not in mask and "@" not in mask:
        return f"{mask}!*@*"
    if "!" not in mask:
        return f"*!{mask}"
    if "@" not in mask:
        return f"{mask}@*"
    return mask


def compile_mask(mask: str) -> re.Pattern[str]:
    """A glob (``*`` any run, ``?`` one character) as a regex over ASCII-folded text."""
    pattern = "".join(
        ".*" if c == "*" else "." if c == "?" else re.escape(c) for c in ascii_lower(mask)
    )
    return re.compile(pattern, re.DOTALL)


@dataclass(frozen=True, slots=True)
class Ban:
    mask: str
    pattern: re.Pattern[str]
    set_by: str
    set_at: UnixTime


@dataclass(eq=False, slots=True)
class Client:
    """One connection's protocol state."""

    conn: ConnId
    host: str
    framer: LineFramer
    connected_at: Seconds
    # Tokens of the flood-control bucket, as of tokens_at.
    tokens: float
    tokens_at: Seconds
    # Whole lines are what counts as activity, so a client that trickles
    # bytes without ever ending a line (slowloris) is still idle.
    last_line_at: Seconds
    # When the keepalive PING went out, while no line has come since.
    ping_sent_at: Seconds | None = None
    # Lines received but not yet executed, held back by flood control (the RecvQ).
    inbox: deque[FrameEvent] = field(default_factory=deque)
    inbox_bytes: int = 0
    # Lines in the inbox that flood control lets through but that the last call
    # left for the next one, its output budget spent (has_ready_lines).
    ready: bool = False
    nick: str | None = None
    user: str | None = None
    realname: str = ""
    registered: bool = False
    # Set by CAP LS/REQ: registration waits for CAP END (IRCv3 capability negotiation).
    negotiating_caps: bool = False
    # What PASS gave, checked once when registration completes, then forgotten.
    password: str | None = None
    # Bytes handed to the adapter and not yet reported sent: the SendQ.
    queued: int = 0
    # Bytes queued by the call in progress, for its output budget.
    turn_bytes: int = 0
    # Set when the SendQ overflowed; the client is dropped once the current
    # operation (a whole broadcast) is over, as InspIRCd does.
    overflowed: bool = False
    # Nothing more is queued for it: it overflowed, or its connection is closed
    # while its QUIT crosses the network, or it is connected to another server.
    silent: bool = False
    # On a network (--redis): its connection closed, its QUIT not yet back from
    # Redis; why it left, for that QUIT.
    gone: bool = False
    leaving: str = ""
    # On a network: registered here, waiting for its introduction to come back
    # from Redis, where the first claim to a nick wins.
    introducing: bool = False
    # On a network: the server it is connected to (None: this one), and its
    # connection's id there; with the server, how the bus names it.
    origin: str | None = None
    origin_conn: ConnId = 0
    # When it took its nick: when two servers' networks merge, the older nick keeps it.
    nick_at: UnixTime = 0.0
    channels: dict[str, Channel] = field(default_factory=dict)
    # User modes, among USER_MODES.
    modes: set[str] = field(default_factory=set)
    away: str | None = None
    signon_at: UnixTime = 0.0
    # The last PRIVMSG or NOTICE it sent, for WHOIS's idle time.
    spoke_at: Seconds = 0.0
    # Channels it was invited to, by folded name. The Channel object itself is
    # kept so that an invitation dies with its channel: one of the same name
    # created later (the invited user's race against a PART) is another object.
    invites: dict[str, Channel] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """How numerics address this client: its nick once registered, before that ``*``."""
        return self.nick if self.registered and self.nick else "*"

    @property
    def prefix(self) -> str:
        return f"{self.nick}!{self.user}@{self.host}"

    @property
    def is_oper(self) -> bool:
        return "o" in self.modes


@dataclass(eq=False, slots=True)
class Channel:
    name: str
    created_at: UnixTime
    # Insertion-ordered, so NAMES lists members in the order they joined.
    members: dict[ConnId, Client] = field(default_factory=dict)
    ops: set[ConnId] = field(default_factory=set)
    voiced: set[ConnId] = field(default_factory=set)
    # Flags among the FLAG modes (imnst).
    modes: set[str] = field(default_factory=lambda: set(NEW_CHANNEL_MODES))
    key: str | None = None
    limit: int | None = None
    # By folded mask, in the order they were set.
    bans: dict[str, Ban] = field(default_factory=dict)
    # Members whose nick!user@host matches a ban, kept up to date by every
    # change of bans, members or nicks, so speaking checks a set.
    banned: set[ConnId] = field(default_factory=set)
    topic: str = ""
    topic_by: str = ""
    topic_at: UnixTime = 0.0

    def prefix_of(self, conn: ConnId) -> str:
        """The highest status prefix of a member (``@``, ``+`` or nothing)."""
        if conn in self.ops:
            return "@"
        return "+" if conn in self.voiced else ""

    def is_banned(self, client: Client) -> bool:
        folded = ascii_lower(client.prefix)
        return any(ban.pattern.fullmatch(folded) for ban in self.bans.values())

    def recheck_ban(self, client: Client) -> None:
        if self.is_banned(client):
            self.banned.add(client.conn)
        else:
            self.banned.discard(client.conn)

    def may_speak(self, client: Client) -> bool:
        """Whether a message from ``client`` reaches the channel (+n, +m, +b; 404 if not)."""
        conn = client.conn
        if conn not in self.members:
            # +m silences outsiders too: they can have no voice.
            modes = self.modes
            return "n" not in modes and "m" not in modes and not self.is_banned(client)
        if conn in self.ops or conn in self.voiced:
            return True
        return "m" not in self.modes and conn not in self.banned

    def mode_string(self, show_key: bool) -> tuple[str, list[str]]:
        """The set modes as 324 shows them; the key only to members."""
        letters = "".join(sorted(self.modes))
        args: list[str] = []
        if self.key is not None:
            letters += "k"
            args.append(self.key if show_key else "*")
        if self.limit is not None:
            letters += "l"
            args.append(str(self.limit))
        return f"+{letters}", args


@dataclass(frozen=True, slots=True)
class PastNick:
    """A nick someone gave up (NICK or leaving), for WHOWAS."""

    nick: str
    user: str
    host: str
    realname: str
    left_at: UnixTime
