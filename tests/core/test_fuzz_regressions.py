"""Regression tests for what the atheris targets in fuzz/ turned up (fuzz/README.md, findings log).

Each test replays one finding through the core's public API, without atheris.
"""

from __future__ import annotations

import pytest

from echochat.core import ChatCore, Limits, Send
from echochat.core.message import parse


@pytest.mark.parametrize("username", ["@:x", "!:x", "@!:x"])
def test_a_username_cannot_shift_the_whois_and_who_parameters(username: str) -> None:
    """311 and 352 carry the username as a middle parameter, where a leading ':'
    would start the trailing one: the host, '*' and the real name would all be
    read as part of the username."""
    server = ChatCore(Limits(), created="today")
    conn, _ = server.connect("127.0.0.1", 0.0)
    script = f"NICK a\r\nUSER {username} 0 * :real name\r\nWHOIS a\r\nJOIN #a\r\nWHO #a\r\n"
    effects = server.receive_data(conn, script.encode(), 0.0)
    replies = [parse(e.data.decode().removesuffix("\r\n")) for e in effects if isinstance(e, Send)]
    by_command = {reply.command: reply.params for reply in replies if reply is not None}
    # 311 <me> <nick> <user> <host> * :<realname>
    assert by_command["311"][3:] == ["127.0.0.1", "*", "real name"]
    # 352 <me> <channel> <user> <host> <server> <nick> H :0 <realname>
    assert by_command["352"][3:] == ["127.0.0.1", "echochat.local", "a", "H@", "0 real name"]
