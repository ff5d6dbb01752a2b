"""What every implementation is started with, and the one line each prints when it listens."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from echochat.core import ChatServer, Limits

Service = Literal["chat", "echo"]


@dataclass(frozen=True, slots=True)
class ServerOptions:
    service: Service
    host: str
    port: int
    limits: Limits


def announce_listening(address: tuple[str, int] | tuple[str, int, int, int]) -> None:
    """Print the contract's single stdout line, flushed, once the socket listens.

    Tests and scripts wait for this line and read the port from it (``--port 0``).
    """
    host, port = address[0], address[1]
    print(f"listening on {host}:{port}", flush=True)


def new_chat_core(limits: Limits) -> ChatServer:
    created = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return ChatServer(limits, created=created)
