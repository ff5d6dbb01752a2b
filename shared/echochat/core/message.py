"""IRC message syntax (RFC 1459 section 2.3, RFC 2812 section 2.3.1): parsing and formatting.

Pure string work; the chat state machine in ``chat.py`` gives the messages
their meaning.
"""

from __future__ import annotations

from dataclasses import dataclass

# RFC 2812 allows 14 middle parameters plus a trailing one.
MAX_PARAMS = 15

_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def ascii_lower(text: str) -> str:
    """Fold case the way ``CASEMAPPING=ascii`` promises: A-Z only, nothing else."""
    return text.translate(_ASCII_LOWER)


@dataclass(frozen=True, slots=True)
class Message:
    """A parsed client message: the command (upper case) and its parameters."""

    command: str
    params: list[str]


def command_of(line: bytes) -> str:
    """The command word of a raw line, for replies that need it before decoding (FAIL)."""
    words = [word for word in line.split(b" ") if word]
    # Skip IRCv3 message tags and a client-sent prefix, both of which we ignore.
    while words and words[0][:1] in (b"@", b":"):
        words.pop(0)
    if not words:
        return "*"
    word = words[0].decode("ascii", "replace").upper()
    return word if word.isalnum() else "*"


def parse(text: str) -> Message | None:
    """Split a decoded line into command and parameters; None for a blank line."""
    rest = text.lstrip(" ")
    if rest.startswith("@"):
        rest = rest.partition(" ")[2].lstrip(" ")
    if rest.startswith(":"):
        rest = rest.partition(" ")[2].lstrip(" ")
    if not rest:
        return None
    trailing: str | None = None
    if " :" in rest:
        rest, _, trailing = rest.partition(" :")
    elif rest.startswith(":"):
        # Only a trailing parameter, no command: not a valid message.
        return None
    # IRC separates parameters with spaces only: a tab is part of a parameter.
    words = [word for word in rest.split(" ") if word]
    if not words:
        return None
    # ASCII only: str.upper() would turn a dotless i (U+0131) into I, so
    # "pr\u0131vmsg" would run as PRIVMSG.
    command = words[0].upper() if words[0].isascii() else words[0]
    params = words[1:]
    if trailing is not None:
        params.append(trailing)
    if len(params) > MAX_PARAMS:
        # Extra middles are folded into the last one, as RFC 2812 servers do.
        params = [*params[: MAX_PARAMS - 1], " ".join(params[MAX_PARAMS - 1 :])]
    return Message(command, params)


def token(text: str) -> str:
    """Make client-supplied text safe to echo back as a middle parameter."""
    word = text.split(" ", 1)[0]
    return "*" if not word or word.startswith(":") else word


def format_message(
    prefix: str | None,
    command: str,
    params: tuple[str, ...] | list[str],
    trailing: str | None,
    max_line: int,
) -> bytes:
    """One server message, CR LF included, cut to ``max_line`` bytes on a character boundary.

    Cutting keeps every line we send within the limit the client was promised,
    even when a long message gets a longer prefix on its way to another client.
    """
    parts = [command, *params] if prefix is None else [f":{prefix}", command, *params]
    if trailing is not None:
        parts.append(f":{trailing}")
    encoded = " ".join(parts).encode()
    if len(encoded) + 2 > max_line:
        encoded = encoded[: max_line - 2].decode("utf-8", "ignore").encode()
    return encoded + b"\r\n"
