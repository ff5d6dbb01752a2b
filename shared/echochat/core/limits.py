"""The resource limits every implementation honours, with the defaults docs/protocol.md states."""

from __future__ import annotations

from dataclasses import dataclass

from echochat.core.passwords import PasswordHash

DEFAULT_MAX_LINE = 512
DEFAULT_SENDQ = 262_144
DEFAULT_MAX_CLIENTS = 1024
DEFAULT_SERVER_NAME = "echochat.local"
# The time policies (seconds) and the flood control; 0 turns a policy off.
DEFAULT_REGISTRATION_TIMEOUT = 60.0
DEFAULT_PING_INTERVAL = 120.0
DEFAULT_PING_TIMEOUT = 60.0
DEFAULT_FLOOD_BURST = 20
DEFAULT_FLOOD_RATE = 5.0
DEFAULT_RECVQ = 8192
DEFAULT_MAX_PER_IP = 16
# On a network (--redis): every server publishes a heartbeat this often, and
# one not heard from for DEFAULT_SPLIT_AFTER seconds is split off (the
# contract: a dead server is noticed within 15 seconds).
HEARTBEAT = 1.0
DEFAULT_SPLIT_AFTER = 10.0

# How many bytes an adapter asks the socket for at a time. 64 KiB matches
# trio's and anyio's default receive size, and keeps an echo connection's
# memory a small multiple of it.
READ_SIZE = 65_536

# How many bytes one call into the core may queue for any one client before it
# stops executing lines and leaves the rest for the next call (at most an
# eighth of the SendQ): bounded work per turn, so that the adapter can let the
# writers hand this turn's output to the kernel before more is queued. Without
# it one 64 KiB read fanned out to a channel queued more than a 64 KiB SendQ
# before any writer ran, and a member that kept up was dropped
# (docs/backpressure.md, a member that keeps up). It must stay well under
# SEND_PIECE, what a writer hands the kernel and reports per turn, or the
# writers fall behind for good.
TURN_BYTES = 8_192

# The most a trio or anyio writer sends in one call before it reports the bytes
# sent: their sends have no partial result (they return once the kernel holds
# every byte), so a whole joined chunk would count in the SendQ until its last
# byte is in the kernel.
SEND_PIECE = 16_384

# How long a closing connection may take to flush its goodbye (ERROR line and
# whatever was queued before it) before it is cut off. Short, because a peer
# that does not read would otherwise hold its socket open for ever, and
# shutdown must finish within 5 s even with 1000 clients.
CLOSE_GRACE = 1.0

# How long one attempt to open the two connections to Redis (--redis) may take
# before it counts as failed and the link backs off to try again: a Redis host
# that drops SYNs would otherwise hold the attempt in connect() for the
# kernel's SYN retries, about two minutes on Linux (tcp_syn_retries 6).
LINK_CONNECT_TIMEOUT = 5.0

# Protocol constants advertised in 005 and enforced by the chat core.
NICKLEN = 16
CHANNELLEN = 50
USERLEN = 16
TOPICLEN = 300
KICKLEN = 255
AWAYLEN = 200
KEYLEN = 23
# Channels one client may be in at once (CHANLIMIT), bans per channel (MAXLIST),
# and mode changes with an argument per MODE command (MODES).
CHANLIMIT = 50
MAXBANS = 64
MODES = 6
# Nicks remembered for WHOWAS, server-wide: the oldest are forgotten first.
WHOWAS_SIZE = 256


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-server limits; every field has a command-line option."""

    max_line: int = DEFAULT_MAX_LINE
    sendq: int = DEFAULT_SENDQ
    max_clients: int = DEFAULT_MAX_CLIENTS
    server_name: str = DEFAULT_SERVER_NAME
    # An unregistered connection is closed this long after it was accepted.
    registration_timeout: float = DEFAULT_REGISTRATION_TIMEOUT
    # After this long without a line from a client the server sends PING;
    # without a line in the next ping_timeout the client is closed.
    ping_interval: float = DEFAULT_PING_INTERVAL
    ping_timeout: float = DEFAULT_PING_TIMEOUT
    # A token bucket per client: flood_burst lines at once, then flood_rate
    # lines per second. Faster lines wait in the client's receive queue; past
    # recvq bytes waiting, it is closed for Excess Flood.
    flood_burst: int = DEFAULT_FLOOD_BURST
    flood_rate: float = DEFAULT_FLOOD_RATE
    recvq: int = DEFAULT_RECVQ
    max_per_ip: int = DEFAULT_MAX_PER_IP
    # The message of the day, one string per line (the CLI reads --motd FILE); None: 422.
    motd: tuple[str, ...] | None = None
    # PASS must match this before registration completes; None: no server password.
    password_hash: PasswordHash | None = None
    # Server operators: OPER <name> <password> is checked against name's hash.
    opers: tuple[tuple[str, PasswordHash], ...] = ()
    # On a network (--redis): how long another server may be silent before its
    # users are split off.
    split_after: float = DEFAULT_SPLIT_AFTER

    def __post_init__(self) -> None:
        # 512 is the IRC line size; below ~64 bytes not even the numerics fit.
        if self.max_line < 64:
            raise ValueError(f"max_line must be at least 64 bytes, not {self.max_line}")
        if self.sendq < self.max_line:
            raise ValueError(
                f"sendq ({self.sendq}) must hold at least one line of max_line ({self.max_line})"
            )
        if self.max_clients < 1:
            raise ValueError(f"max_clients must be at least 1, not {self.max_clients}")
        for name in ("registration_timeout", "ping_interval", "flood_rate", "max_per_ip"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be 0 (off) or more, not {getattr(self, name)}")
        if self.ping_interval and self.ping_timeout <= 0:
            raise ValueError(f"ping_timeout must be more than 0, not {self.ping_timeout}")
        if self.flood_rate and self.flood_burst < 1:
            raise ValueError(f"flood_burst must be at least 1 line, not {self.flood_burst}")
        if self.recvq < self.max_line:
            raise ValueError(
                f"recvq ({self.recvq}) must hold at least one line of max_line ({self.max_line})"
            )
        if not self.server_name or any(c in self.server_name for c in " \r\n\0:!@"):
            raise ValueError(f"server_name {self.server_name!r} is not a valid IRC server name")
        if self.split_after < 3 * HEARTBEAT:
            raise ValueError(
                f"split_after must be at least {3 * HEARTBEAT:g} s (three heartbeats), "
                f"not {self.split_after}"
            )
        for name, _ in self.opers:
            if not name or any(c in name for c in " \r\n\0:"):
                raise ValueError(f"operator name {name!r} is not one word")
