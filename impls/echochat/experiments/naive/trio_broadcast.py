"""A naive trio chat server: a broadcast awaits ``send_all`` for every member in turn.

A teaching variant for the slow-member experiment, not part of echochat.
"""

from __future__ import annotations

import signal
from functools import partial

import trio

from echochat.experiments.naive.room import Room


class Connection:
    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        # Two tasks sending on one stream raise BusyResourceError (trio#328),
        # so a broadcast waits for any other send to this member to finish.
        self.sending = trio.Lock()


async def handle(room: Room[Connection], stream: trio.SocketStream) -> None:
    try:
        host = stream.socket.getpeername()[0]
    except OSError:
        return  # Gone before we got to it.
    connection = Connection(stream)
    room.connect(connection, host)
    pending = b""
    try:
        while data := await stream.receive_some(65536):
            *lines, pending = (pending + data).split(b"\n")
            for line in lines:
                for member, out in room.receive(connection, line):
                    # The naive broadcast. send_all returns once the kernel has
                    # the bytes, so a member that does not read stops this loop,
                    # and with it this sender's reads and every other delivery.
                    await send(member, out)
    except trio.BrokenResourceError:
        pass  # Reset by the peer: forget it like a clean close.
    finally:
        room.disconnect(connection)


async def send(member: Connection, data: bytes) -> None:
    try:
        async with member.sending:
            await member.stream.send_all(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass  # That member is gone; its own handler forgets it.


async def main() -> None:
    room: Room[Connection] = Room()
    async with trio.open_nursery() as nursery:
        # trio leaves SIGTERM fatal by default (trio#134): receive it before announcing.
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            listeners = await nursery.start(
                partial(trio.serve_tcp, partial(handle, room), 0, host="127.0.0.1")
            )
            host, port = listeners[0].socket.getsockname()[:2]
            print(f"listening on {host}:{port}", flush=True)
            async for _ in signals:
                break
        # Members stuck in send_all would never return by themselves.
        nursery.cancel_scope.cancel()


if __name__ == "__main__":
    trio.run(main)
