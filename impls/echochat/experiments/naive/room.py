"""The little IRC the naive servers speak, without I/O: lines in, (recipient, bytes) out.

Just enough for the slow-member experiment and its warm-up: NICK, USER (answered
with 001), JOIN, PING and PRIVMSG to a channel. No limits and no errors: these
servers exist to show one flaw, and everything else is left out.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Generic, TypeVar

SERVER = "naive.local"

Member = TypeVar("Member", bound=Hashable)


class Room(Generic[Member]):
    """Nicks and channels of the connected members; ``Member`` is a server's connection object."""

    def __init__(self) -> None:
        self.prefixes: dict[Member, str] = {}
        self.channels: dict[str, list[Member]] = {}

    def connect(self, member: Member, host: str) -> None:
        self.prefixes[member] = f"*!u@{host}"

    def disconnect(self, member: Member) -> None:
        del self.prefixes[member]
        for members in self.channels.values():
            if member in members:
                members.remove(member)

    def receive(self, member: Member, line: bytes) -> list[tuple[Member, bytes]]:
        """What to send to whom for one line from ``member``, in order."""
        command, params = parse(line.rstrip(b"\r").decode(errors="replace"))
        prefix = self.prefixes[member]
        if command == "NICK" and params:
            self.prefixes[member] = f"{params[0]}{prefix[prefix.index('!') :]}"
        elif command == "USER":
            nick = prefix.partition("!")[0]
            return [(member, f":{SERVER} 001 {nick} :Welcome to a naive server\r\n".encode())]
        elif command == "PING" and params:
            return [(member, f":{SERVER} PONG {SERVER} :{params[0]}\r\n".encode())]
        elif command == "JOIN" and params:
            self.channels.setdefault(params[0], []).append(member)
            return [(member, f":{prefix} JOIN {params[0]}\r\n".encode())]
        elif command == "PRIVMSG" and len(params) == 2 and params[0] in self.channels:
            data = f":{prefix} PRIVMSG {params[0]} :{params[1]}\r\n".encode()
            return [(other, data) for other in self.channels[params[0]] if other != member]
        return []


def parse(line: str) -> tuple[str, list[str]]:
    """``COMMAND middle ... :trailing`` -> ("COMMAND", [middle, ..., trailing])."""
    head, colon, trailing = line.partition(" :")
    words = head.split()
    if not words:
        return "", []
    return words[0].upper(), words[1:] + ([trailing] if colon else [])
