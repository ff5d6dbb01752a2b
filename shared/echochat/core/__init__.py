"""echochat's sans-I/O core: framing, the chat state machine, limits and errors.

Pure synchronous code over bytes. It imports no event loop, socket or
selector module (an import-linter contract and a test check this), so the
same decisions drive the asyncio, trio and anyio adapters.
"""

from echochat.core.accepting import AcceptPacer, Retry
from echochat.core.chat import ChatCore
from echochat.core.echo import EchoCore
from echochat.core.effects import (
    Close,
    CloseLink,
    ConnId,
    Effect,
    LinkEffect,
    LinkRole,
    LinkSend,
    Send,
)
from echochat.core.federation import LinkRefusedError
from echochat.core.framing import Line, LineFramer, LineTooLong
from echochat.core.limits import (
    CLOSE_GRACE,
    LINK_CONNECT_TIMEOUT,
    READ_SIZE,
    SEND_PIECE,
    TURN_BYTES,
    Limits,
)
from echochat.core.version import __version__

__all__ = [
    "CLOSE_GRACE",
    "LINK_CONNECT_TIMEOUT",
    "READ_SIZE",
    "SEND_PIECE",
    "TURN_BYTES",
    "AcceptPacer",
    "ChatCore",
    "Close",
    "CloseLink",
    "ConnId",
    "EchoCore",
    "Effect",
    "Limits",
    "Line",
    "LineFramer",
    "LineTooLong",
    "LinkEffect",
    "LinkRefusedError",
    "LinkRole",
    "LinkSend",
    "Retry",
    "Send",
    "__version__",
]
