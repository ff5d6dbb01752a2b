"""Coverage-guided fuzz target for ``parse``, ``format_message``, ``token`` and ``command_of``.

Run it with ``make fuzz`` (see fuzz/README.md). The first input byte picks one
of three checks (see ``test_one_input``):

- ``ANY_TEXT``: the rest, decoded with ``surrogateescape`` so that any byte
  string maps to some ``str`` (lone surrogates included), goes to ``parse``,
  ``token`` and, as bytes, ``command_of``. None of them may raise, and each
  result has the shape the chat core relies on.
- ``CLIENT_LINE``: the rest is what a client sends; it goes through
  ``LineFramer`` and UTF-8 decoding exactly as in ``ChatCore``, and what
  ``parse`` makes of it is echoed back the way the core does it (client words
  as ``token()`` middles, client text as the trailing parameter).
- ``SERVER_MESSAGE``: ``format_message`` on any well-formed arguments: the
  line must come back from ``parse`` unchanged when it fits, and be cut only
  as much as needed (on a character boundary) when it does not.

Every formatted line must pass ``core_helpers.check_output_line``: end with CR LF, hold no
other CR, LF or NUL, be at most ``max_line`` bytes and be valid UTF-8.
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris

# The output checks the core's tests apply to every effect, so the two cannot drift apart.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "core"))
from core_helpers import check_middle, check_output_line

with atheris.instrument_imports(include=["echochat"]):
    from echochat.core.framing import Line, LineFramer
    from echochat.core.message import (
        MAX_PARAMS,
        Message,
        ascii_lower,
        command_of,
        format_message,
        parse,
        token,
    )

DICTIONARY = Path(__file__).with_name("irc.dict")
ANY_TEXT, CLIENT_LINE, SERVER_MESSAGE = range(3)
# The smallest limit the chat core accepts (Limits.max_line); inputs choose
# up to 255 bytes more, so short inputs already reach the cutting code.
MIN_MAX_LINE = 64
PREFIX = "nick!user@host.example"
# Separates the fields of a SERVER_MESSAGE input; it cannot occur in them.
FIELD_SEPARATOR = "\x1f"
UNSAFE = str.maketrans("", "", "\r\n\0")


def expected_params(middles: list[str], trailing: str | None) -> list[str]:
    """What parse should return for these parameters (RFC 2812 allows 15, more are folded)."""
    params = [*middles] if trailing is None else [*middles, trailing]
    if len(params) > MAX_PARAMS:
        params = [*params[: MAX_PARAMS - 1], " ".join(params[MAX_PARAMS - 1 :])]
    return params


def check_any_text(data: bytes) -> None:
    text = data.decode("utf-8", "surrogateescape")
    message = parse(text)
    if message is not None:
        assert message.command, text
        assert " " not in message.command, text
        if message.command.isascii():
            assert message.command == message.command.upper(), text
        assert len(message.params) <= MAX_PARAMS, text
        # Only the last parameter (trailing, or folded) may hold spaces or be empty.
        for middle in message.params[:-1]:
            assert middle, text
            assert " " not in middle, text
    # Spaces before a message mean nothing.
    assert parse(" " + text) == message, text

    word = token(text)
    assert word == "*" or text.startswith(word), (text, word)
    check_middle(word)

    command = command_of(data)
    assert command == "*" or (command.isascii() and command.isalnum()), (data, command)
    assert command == command.upper(), (data, command)

    # CASEMAPPING=ascii: A-Z fold to a-z, every other character stays as it is.
    folded = ascii_lower(text)
    assert len(folded) == len(text), text
    for before, after in zip(text, folded, strict=True):
        assert after == (chr(ord(before) + 32) if "A" <= before <= "Z" else before), text


def check_client_line(max_line: int, data: bytes) -> None:
    for event in LineFramer(max_line).receive_data(data):
        if not isinstance(event, Line):
            continue
        try:
            text = event.data.decode("utf-8")
        except UnicodeDecodeError:
            command = command_of(event.data)
            line = format_message(PREFIX, "FAIL", [command, "INVALID_UTF8"], "rejected", max_line)
            check_output_line(line, max_line)
            continue
        message = parse(text)
        if message is None:
            continue
        *words, last = [message.command, *message.params]
        middles = [token(word) for word in words]
        line = format_message(PREFIX, "NOTICE", middles, last, max_line)
        body = check_output_line(line, max_line)
        full = format_message(PREFIX, "NOTICE", middles, last, sys.maxsize)
        if line == full:
            assert parse(body) == Message("NOTICE", expected_params(middles, last)), (data, line)


def check_server_message(flags: int, max_line: int, data: bytes) -> None:
    fields = data.decode("utf-8", "replace").translate(UNSAFE).split(FIELD_SEPARATOR)
    prefix = fields[0].replace(" ", "") if flags & 1 else None
    # Commands are ours (names and numerics), never a client's: ASCII words.
    command = fields[1] if len(fields) > 1 else ""
    if not command.isascii() or not command.isalnum():
        command = "PRIVMSG"
    trailing = fields[-1] if flags & 2 else None
    middles = [token(field) for field in fields[2 : -1 if flags & 2 else None]]

    line = format_message(prefix, command, middles, trailing, max_line)
    body = check_output_line(line, max_line)
    full = format_message(prefix, command, middles, trailing, sys.maxsize)
    if line == full:
        assert parse(body) == Message(command.upper(), expected_params(middles, trailing)), line
    else:
        # Cut to max_line - 2 bytes, less at most the 3 leading bytes of a split character.
        assert full.startswith(body.encode()), (line, full)
        assert len(line) >= max_line - 3, (max_line, line)


def test_one_input(raw: bytes) -> None:
    # Layout: one byte for the check (and flags), one for max_line, then the data.
    if len(raw) < 2:
        return
    check, flags = raw[0] % 3, raw[0] // 3
    max_line = MIN_MAX_LINE + raw[1]
    data = raw[2:]
    if check == ANY_TEXT:
        check_any_text(data)
    elif check == CLIENT_LINE:
        check_client_line(max_line, data)
    else:
        check_server_message(flags, max_line, data)


def main() -> None:
    # The IRC words help the fuzzer reach tags, prefixes and trailing parameters.
    atheris.Setup([*sys.argv, f"-dict={DICTIONARY}"], test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
