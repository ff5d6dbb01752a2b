"""Slow readers, resets during broadcasts and capacity, against every implementation."""

from __future__ import annotations

import re
import socket
import struct
from collections.abc import Callable

from echochat.registry import ASYNCIO_PROTOCOL, ASYNCIO_STREAMS, parse_configuration
from irc import IrcClient, unique_channel, unique_nick
from servers import ServerProcess

Start = Callable[..., ServerProcess]
Open = Callable[..., IrcClient]
SERVER = "echochat.local"


def member(open_client: Open, port: int, channel: str, **options: int) -> IrcClient:
    client = open_client(port, **options)
    client.register(unique_nick())
    client.join(channel)
    return client


def read_numbered(client: IrcClient, sender: str, count: int) -> tuple[list[int], list[str]]:
    """Read until message ``count - 1`` arrives; return the numbers seen and the other lines."""
    numbers: list[int] = []
    others: list[str] = []
    pattern = re.compile(rf":{sender}!\S+ PRIVMSG #\S+ :(\d+) [xy]+")
    while not numbers or numbers[-1] < count - 1:
        line = client.read_line()
        match = pattern.fullmatch(line)
        if match:
            numbers.append(int(match.group(1)))
        else:
            others.append(line)
    return numbers, others


def test_member_that_never_reads_is_dropped_for_sendq(
    start_server: Start, open_client: Open
) -> None:
    server = start_server("chat", "--sendq", "32768")
    channel = unique_channel()
    # A tiny receive window, so the kernel cannot absorb much on its behalf.
    stalled = member(open_client, server.port, channel, rcvbuf=4096)
    readers = [member(open_client, server.port, channel) for _ in range(3)]
    sender = readers[0]
    for client in readers:
        client.sync()
    text = "x" * 200
    sent, batch, dropped = 0, 50, False
    while not dropped:
        assert sent < 20_000, "the stalled member was never dropped"
        sender.send(*(f"PRIVMSG {channel} :{sent + i} {text}" for i in range(batch)))
        sent += batch
        for reader in readers[1:]:
            numbers, others = read_numbered(reader, sender.nick, sent)
            # Every message, once, in order: nothing lost, repeated or reordered.
            assert numbers == list(range(sent - batch, sent))
            quits = [line for line in others if " QUIT " in line]
            assert quits in ([], [f":{stalled.nick}!u@127.0.0.1 QUIT :SendQ exceeded"])
            dropped = dropped or bool(quits)
    assert sent > 32768 // len(text), "dropped before its SendQ could have filled"
    # The stalled client got a prefix of the stream, then the server closed it.
    stalled.sock.settimeout(10)
    received = stalled.expect_eof()
    pattern = re.compile(r".* PRIVMSG \S+ :(\d+) x+")
    numbers = [int(m.group(1)) for m in map(pattern.fullmatch, received) if m]
    assert numbers == list(range(len(numbers)))
    assert sender.sync() == [f":{stalled.nick}!u@127.0.0.1 QUIT :SendQ exceeded"]


def test_peer_reset_in_the_middle_of_a_broadcast(start_server: Start, open_client: Open) -> None:
    server = start_server("chat")
    channel = unique_channel()
    victim = member(open_client, server.port, channel)
    readers = [member(open_client, server.port, channel) for _ in range(3)]
    sender = readers[0]
    for client in readers:
        client.sync()
    # 1200 lines of ~130 bytes stay below the readers' 256 KiB SendQ, even
    # though they only start reading once everything has been sent.
    text = "y" * 100
    sender.send(*(f"PRIVMSG {channel} :{i} {text}" for i in range(600)))
    # SO_LINGER with a zero timeout makes close() send a RST, while the
    # server is still fanning those messages out.
    victim.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    victim.close()
    sender.send(*(f"PRIVMSG {channel} :{i} {text}" for i in range(600, 1200)))
    for reader in readers[1:]:
        numbers, others = read_numbered(reader, sender.nick, 1200)
        assert numbers == list(range(1200))
        quit_line = f":{victim.nick}!u@127.0.0.1 QUIT :Connection closed"
        others += reader.sync()
        assert others.count(quit_line) == 1
    assert sender.sync() == [f":{victim.nick}!u@127.0.0.1 QUIT :Connection closed"]


def test_max_clients_refuses_extra_connections_and_frees_slots(
    start_server: Start, open_client: Open
) -> None:
    server = start_server("chat", "--max-clients", "3")
    clients = [open_client(server.port) for _ in range(3)]
    for client in clients:
        client.register(unique_nick())
    extra = open_client(server.port)
    assert extra.expect_eof() == ["ERROR :Closing link (Server is full)"]
    for client in clients:
        assert client.sync() == []  # Existing clients are unaffected.
    clients[0].send("QUIT")
    clients[0].expect(r"ERROR :Closing link \(Quit: Client Quit\)")
    clients[0].expect_eof()
    again = open_client(server.port)
    again.register(unique_nick())  # The freed slot can be used.
    assert open_client(server.port).expect_eof() == ["ERROR :Closing link (Server is full)"]


def test_sendq_overflow_in_one_burst_sends_the_farewell(
    start_server: Start, open_client: Open, impl: str
) -> None:
    """A member that does not read, sent far more than its SendQ in one packet, is dropped
    with the farewell after whole lines where the framework can send it.

    Every implementation hands the kernel what it takes before the SendQ
    counts it (#11), so the member's kernel buffers are small here and the
    burst is much larger than them. On asyncio (Streams and Protocol)
    ``write()`` hands whole chunks to the transport and a cancelled
    ``drain()`` takes none back, so the farewell always follows. The trio
    and anyio writers are in the middle of a send to this member when it is
    dropped: that send may have cut a line (trio#889), so they send the
    farewell only if no send was in flight, and the stream ends after whole
    lines and at most one cut one.
    """
    server = start_server("chat", "--sendq", "4096", "--send-buffer", "4096")
    channel = unique_channel()
    victim = open_client(server.port, rcvbuf=4096)
    witness, sender = open_client(server.port), open_client(server.port)
    for client in (victim, witness, sender):
        client.register(unique_nick())
    victim.join(channel)
    witness.join(channel)
    victim.sync()
    witness.sync()
    # About 140 KiB for the victim in one packet: far more than its 4 KiB
    # SendQ and the few KiB the kernel holds for it each way.
    sender.send(*(f"PRIVMSG {victim.nick} :{i} {'b' * 200}" for i in range(600)))
    witness.expect(rf":{victim.nick}!u@127\.0\.0\.1 QUIT :SendQ exceeded")
    lines = victim.expect_eof()
    farewell = "ERROR :Closing link (SendQ exceeded)"
    adapter = parse_configuration(impl)[0].adapter
    if adapter in (ASYNCIO_STREAMS, ASYNCIO_PROTOCOL):
        assert lines[-1:] == [farewell], lines[-3:]
    if lines[-1:] == [farewell]:
        lines.pop()
    assert len(lines) < 600
    assert all(" PRIVMSG " in line for line in lines)  # Whole lines before it.
