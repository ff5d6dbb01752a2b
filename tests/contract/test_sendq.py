"""The SendQ counts only what a client has not taken: a member that keeps up is never dropped.

Issue #11: the SendQ also cut off members that read at full speed, because it
counted bytes the server itself had not yet tried to hand to the kernel (the
core ran a whole read before any writer ran; asyncio's ``read()`` returns
buffered bytes without yielding; trio's and anyio's writers reported a joined
chunk only once all of it was in the kernel). Fast members here read at
kernel speed (``echochat.experiments.burst``), so the test client is never
what falls behind. "Not delayed" is measured by reads with deadlines.
"""

from __future__ import annotations

import selectors
import socket
import time
from collections.abc import Callable

import pytest

from echochat.experiments.burst import READ_BUFFER, BurstReader, burst
from flood import BURSTS, SEND_BUFFER
from irc import IrcClient, unique_channel, unique_nick
from servers import ServerProcess

Start = Callable[..., ServerProcess]
Open = Callable[..., IrcClient]

# The fast members must keep up with a server bursting at full speed: no other
# test's load may starve them (under pytest-xdist the other workers wait).
pytestmark = pytest.mark.alone

# How long the talker's PING and the fast member's last line may take after
# the burst: generous for a loaded 2-core machine (each takes 0.04-0.6 s
# on an idle one). Before the fix the fast member was dropped instead.
NOT_DELAYED = 3.0


def read_to_eof(sock: socket.socket, deadline: float) -> bytes:
    """Everything ``sock`` receives until EOF; fails if EOF does not come by ``deadline``."""
    received = bytearray()
    while True:
        sock.settimeout(max(deadline - time.monotonic(), 0.001))
        try:
            chunk = sock.recv(READ_BUFFER)
        except ConnectionResetError:
            return bytes(received)
        if not chunk:
            return bytes(received)
        received += chunk


@pytest.mark.parametrize(("lines", "size"), BURSTS)
@pytest.mark.parametrize("sendq", [65_536, 262_144])
def test_a_member_reading_at_kernel_speed_keeps_up_with_a_1_mb_burst(
    start_server: Start, open_client: Open, sendq: int, lines: int, size: int
) -> None:
    server = start_server(
        "chat", "--sendq", str(sendq), "--send-buffer", str(SEND_BUFFER), "--flood-rate", "0"
    )
    channel = unique_channel()
    talker = open_client(server.port)
    fast = open_client(server.port)
    # A tiny receive window, so the kernel holds little on its behalf.
    stalled = open_client(server.port, rcvbuf=4096)
    for client in (talker, fast, stalled):
        client.register(unique_nick())
        client.join(channel)
    for client in (talker, fast):
        client.sync()
    data = burst(channel, lines, size)
    assert len(data) > 1_000_000
    started = time.monotonic()
    reader = BurstReader(fast.sock, talker.nick, lines, started + 20, quitter=stalled.nick)
    reader.start()
    talker.send_raw(data)  # One send of the whole burst.
    talker.sock.settimeout(NOT_DELAYED)
    talker.send("PING :after")
    talker.read_until(r":\S+ PONG \S+ :after")  # After the stalled member's QUIT, if it came.
    pong_after = time.monotonic() - started
    reader.join(25)
    got = reader.received
    assert got.ended is None, f"the fast member was cut off: {got.ended} after {got.got} lines"
    assert (got.got, got.disorder) == (lines, 0)
    assert got.all_at is not None
    last_line_after = got.all_at - started
    # The member that never reads was dropped for SendQ exceeded ...
    assert got.quit_after is not None
    read_to_eof(stalled.sock, time.monotonic() + 10)
    # ... and neither the talker nor the fast member waited for it.
    assert pong_after < NOT_DELAYED
    assert last_line_after < NOT_DELAYED
    print(
        f"\n{server.impl} sendq {sendq}: all {lines} lines in {last_line_after:.3f} s,"
        f" PONG in {pong_after:.3f} s, stalled member dropped after {got.quit_after} lines"
    )


# 40 of 200 members send their whole flood burst (20 lines) at the same moment.
MEMBERS = 200
TALKERS = 40
FLOOD_BURST = 20
# Long enough that one talker's burst is more than the core's budget for one
# turn (TURN_BYTES), so the turns of many talkers interleave.
BURST_LINE_SIZE = 450


def drain_members(
    members: list[socket.socket], expected: list[int], deadline: float
) -> list[bytes]:
    """Read every member at kernel speed until each has ``expected`` burst lines; their lines."""
    received = [bytearray() for _ in members]
    lines = [0] * len(members)
    with selectors.DefaultSelector() as selector:
        for index, sock in enumerate(members):
            sock.setblocking(False)
            selector.register(sock, selectors.EVENT_READ, index)
        while any(got < want for got, want in zip(lines, expected, strict=True)):
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"members still waiting: {sum(expected) - sum(lines)} lines"
            for key, _ in selector.select(remaining):
                index = key.data
                chunk = members[index].recv(READ_BUFFER)
                assert chunk, f"member {index} was closed: {bytes(received[index][-300:])!r}"
                received[index] += chunk
                lines[index] += chunk.count(b"\n")  # Checked to be burst lines below.
    return [bytes(data) for data in received]


def test_forty_of_two_hundred_members_send_their_flood_burst_at_the_same_moment(
    start_server: Start, open_client: Open
) -> None:
    """Every member that reads gets every line, in order: the bounded turns of many
    talkers at once neither starve the writers nor overflow anyone's SendQ."""
    server = start_server("chat", "--flood-rate", "5", "--flood-burst", str(FLOOD_BURST))
    channel = unique_channel()
    members = [open_client(server.port) for _ in range(MEMBERS)]
    for client in members:
        client.register(unique_nick())
        client.join(channel)
    for client in members:
        client.sync()  # Everyone's JOINs read: nothing left before the bursts.
    talkers = members[:TALKERS]
    text = "y" * (BURST_LINE_SIZE - len(f"PRIVMSG {channel} :00 00 \r\n"))
    bursts = [
        "".join(f"PRIVMSG {channel} :{t:02} {n:02} {text}\r\n" for n in range(FLOOD_BURST)).encode()
        for t in range(TALKERS)
    ]
    for talker, data in zip(talkers, bursts, strict=True):
        talker.send_raw(data)
    expected = [(TALKERS - (index < TALKERS)) * FLOOD_BURST for index in range(MEMBERS)]
    received = drain_members([client.sock for client in members], expected, time.monotonic() + 30)
    for index, (client, data) in enumerate(zip(members, received, strict=True)):
        order: dict[bytes, list[bytes]] = {}
        for line in data.split(b"\r\n"):
            if b" PRIVMSG " in line:
                sender, number = line.split(b" :", 1)[1].split(b" ", 2)[:2]
                order.setdefault(sender, []).append(number)
            else:
                assert not line, f"{client.nick} got {line!r}"
        others = [f"{t:02}".encode() for t in range(TALKERS) if t != index]
        assert sorted(order) == others
        numbers = [f"{n:02}".encode() for n in range(FLOOD_BURST)]
        assert all(got == numbers for got in order.values()), f"{client.nick}: out of order"
