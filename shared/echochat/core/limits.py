"""The resource limits every implementation honours, with the defaults of PROTOCOL.md."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_MAX_LINE = 512
DEFAULT_SENDQ = 262_144
DEFAULT_MAX_CLIENTS = 1024
DEFAULT_SERVER_NAME = "echochat.local"

# How many bytes an adapter asks the socket for at a time. 64 KiB matches
# trio's and anyio's default receive size, and keeps an echo connection's
# memory a small multiple of it.
READ_SIZE = 65_536

# How long a closing connection may take to flush its goodbye (ERROR line and
# whatever was queued before it) before it is cut off. Short, because a peer
# that does not read would otherwise hold its socket open for ever, and
# shutdown must finish within 5 s even with 1000 clients.
CLOSE_GRACE = 1.0

# Protocol constants advertised in 005 and enforced by the chat core.
NICKLEN = 16
CHANNELLEN = 50


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-server limits; every field has a command-line option."""

    max_line: int = DEFAULT_MAX_LINE
    sendq: int = DEFAULT_SENDQ
    max_clients: int = DEFAULT_MAX_CLIENTS
    server_name: str = DEFAULT_SERVER_NAME

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
        if not self.server_name or any(c in self.server_name for c in " \r\n\0:!@"):
            raise ValueError(f"server_name {self.server_name!r} is not a valid IRC server name")
