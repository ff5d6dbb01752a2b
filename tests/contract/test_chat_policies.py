"""The abuse policies and fault handling, against every implementation, with short limits.

Each test starts its own server with the options it needs: the limits are
the CLI's, set short so the suite stays fast. Time-outs are checked by
reading what the server sends, never by sleeping and hoping.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Callable

from irc import IrcClient, unique_channel, unique_nick
from servers import ServerProcess

Start = Callable[..., ServerProcess]
Open = Callable[..., IrcClient]
SERVER = "echochat.local"


def registered(open_client: Open, port: int, channel: str | None = None) -> IrcClient:
    client = open_client(port)
    client.register(unique_nick())
    if channel is not None:
        client.join(channel)
    return client


def trickle(sock: socket.socket, data: bytes, interval: float, stop: threading.Event) -> None:
    """Send ``data`` one byte per ``interval`` until ``stop`` is set or the server closes."""
    for byte in data:
        if stop.wait(interval):
            return
        try:
            sock.send(bytes([byte]))
        except OSError:
            return  # Closed by the server: what the test waits for.


def test_registration_timeout_closes_silent_and_slowloris_clients(
    start_server: Start, open_client: Open
) -> None:
    server = start_server("chat", "--registration-timeout", "1")
    started = time.monotonic()
    half_registered = open_client(server.port)
    half_registered.send("NICK halfway")
    # A slowloris: one byte per second, never finishing its USER line.
    slowloris = open_client(server.port)
    stop = threading.Event()
    sender = threading.Thread(
        target=trickle, args=(slowloris.sock, b"USER slow 0 * :Slow Loris", 1.0, stop)
    )
    sender.start()
    try:
        staying = registered(open_client, server.port)
        for client in (half_registered, slowloris):
            lines = client.expect_eof()
            assert lines[-1] == "ERROR :Closing link (Registration timeout)", lines
        # The deadline counts from the accept, which came after `started`.
        assert time.monotonic() - started >= 0.95
    finally:
        stop.set()
        sender.join()
    # The nick of the timed-out connection is free again; registered clients stay.
    assert staying.sync() == []
    reuse = open_client(server.port)
    reuse.register("halfway")


def test_keepalive_pings_the_silent_and_closes_who_does_not_answer(
    start_server: Start, open_client: Open
) -> None:
    server = start_server("chat", "--ping-interval", "0.5", "--ping-timeout", "0.5")
    channel = unique_channel()
    answering = registered(open_client, server.port, channel)
    silent = registered(open_client, server.port, channel)
    # Bytes without an LF are no activity: this client trickles them faster
    # than the ping interval and is still timed out.
    trickling = registered(open_client, server.port, channel)
    stop = threading.Event()
    sender = threading.Thread(target=trickle, args=(trickling.sock, b"x" * 100, 0.2, stop))
    sender.start()
    heard: list[str] = []
    try:
        for _ in range(2):  # Answering once keeps it alive for the next round.
            heard += answering.read_until(f"PING :{SERVER}")
            answering.send(f"PONG :{SERVER}")
        for client in (silent, trickling):
            lines = client.expect_eof()
            assert f"PING :{SERVER}" in lines
            assert lines[-1] == "ERROR :Closing link (Ping timeout: 0.5 seconds)", lines
    finally:
        stop.set()
        sender.join()
    heard += answering.sync()
    assert sorted(line for line in heard if " QUIT " in line) == sorted(
        f":{client.nick}!u@127.0.0.1 QUIT :Ping timeout: 0.5 seconds"
        for client in (silent, trickling)
    )


def received_so_far(client: IrcClient) -> str:
    """What has arrived on ``client`` without waiting for more (decoded, unparsed)."""
    client.sock.setblocking(False)
    try:
        while chunk := client.sock.recv(65536):
            client.buffer += chunk
    except BlockingIOError:
        pass
    finally:
        client.sock.settimeout(10.0)
    return client.buffer.decode()


def test_flood_control_delays_lines_without_dropping_or_slowing_others(
    start_server: Start, open_client: Open
) -> None:
    server = start_server("chat", "--flood-burst", "5", "--flood-rate", "20")
    flooder = registered(open_client, server.port)
    other = registered(open_client, server.port)
    flooder.send(*(f"PING flood{i}" for i in range(30)))
    # Answered at once although 25 of the flooder's lines are still waiting.
    other.send("PING other")
    other.expect(rf":{SERVER} PONG {SERVER} :other")
    early = received_so_far(flooder).count(" PONG ")
    assert early < 30, "the flooder's lines all ran before the other client's"
    pongs = flooder.read_until(rf":{SERVER} PONG {SERVER} :flood29")
    # Every line executed, in order: delayed, never dropped.
    assert pongs == [f":{SERVER} PONG {SERVER} :flood{i}" for i in range(30)]


def test_excess_flood_closes_the_flooder_only(start_server: Start, open_client: Open) -> None:
    server = start_server("chat", "--flood-burst", "5", "--flood-rate", "1", "--recvq", "2048")
    channel = unique_channel()
    flooder = registered(open_client, server.port, channel)
    witness = registered(open_client, server.port, channel)
    text = "y" * 100
    flooder.send(*(f"PRIVMSG {channel} :{i} {text}" for i in range(100)))
    lines = flooder.expect_eof()
    assert lines[-1] == "ERROR :Closing link (Excess Flood)", lines[-3:]
    seen = witness.read_until(rf":{flooder.nick}!\S+ QUIT :Excess Flood")
    # What the bucket held (at most the burst, less what registering took)
    # went through in order; the rest never ran.
    numbers = [int(re.sub(r".* :(\d+) y+$", r"\1", line)) for line in seen[:-1]]
    assert 1 <= len(numbers) <= 5
    assert numbers == list(range(len(numbers)))
    assert witness.sync() == []


def lusers(client: IrcClient) -> tuple[int, int]:
    """The server's own count of connections and of channels (LUSERS 255 and 254)."""
    client.send("LUSERS")
    lines = client.read_until(rf":{SERVER} 255 .*")
    channels = next(
        (int(m.group(1)) for line in lines if (m := re.search(r" 254 \S+ (\d+) ", line))), 0
    )
    connections = re.fullmatch(r".* :I have (\d+) clients and 0 servers", lines[-1])
    assert connections is not None, lines
    return int(connections.group(1)), channels


def wait_for_lusers(client: IrcClient, connections: int, channels: int) -> None:
    """Ask until the server has processed the disconnects it was sent (bounded)."""
    deadline = time.monotonic() + 10
    while (seen := lusers(client)) != (connections, channels):
        assert time.monotonic() < deadline, f"LUSERS stuck at {seen}"


def test_per_ip_limit_refuses_extra_connections_and_frees_slots(
    start_server: Start, open_client: Open
) -> None:
    server = start_server("chat", "--max-per-ip", "2")
    first = registered(open_client, server.port)
    second = open_client(server.port)
    second.send("NICK second")
    refused = open_client(server.port)
    assert refused.expect_eof() == ["ERROR :Closing link (Too many connections from your IP)"]
    second.close()
    wait_for_lusers(first, connections=1, channels=0)
    registered(open_client, server.port)


def test_injected_fault_closes_only_that_connection_and_is_logged_once(
    start_server: Start, open_client: Open
) -> None:
    server = start_server("chat", "--inject-fault", "CRASH-ME")
    channel = unique_channel()
    victim = registered(open_client, server.port, channel)
    witness = registered(open_client, server.port, channel)
    victim.send(f"PRIVMSG {channel} :CRASH-ME")
    # EOF (or a reset), never a hang; the peers hear it left, and its nick is free.
    victim.expect_eof()
    witness.read_until(rf":{victim.nick}!\S+ QUIT :Connection closed")
    assert lusers(witness) == (1, 1)
    again = open_client(server.port)
    again.register(victim.nick)
    again.join(channel)
    server.stop(injected_faults=1)


def test_http_request_is_closed_at_once(start_server: Start, open_client: Open) -> None:
    server = start_server("chat")
    browser = open_client(server.port)
    browser.send_raw(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: */*\r\n\r\n")
    assert browser.expect_eof() == ["ERROR :Closing link (HTTP request on an IRC port)"]
    # A registered user may still say GET: it is just an unknown command then.
    user = registered(open_client, server.port)
    user.send("GET /")
    user.expect(rf":{SERVER} 421 {user.nick} GET :Unknown command")


def test_half_close_gets_its_replies_then_is_cleaned_up(
    start_server: Start, open_client: Open
) -> None:
    server = start_server("chat")
    channel = unique_channel()
    witness = registered(open_client, server.port, channel)
    leaving = registered(open_client, server.port, channel)
    leaving.send("PING last-words")
    leaving.sock.shutdown(socket.SHUT_WR)
    assert leaving.expect_eof() == [f":{SERVER} PONG {SERVER} :last-words"]
    witness.read_until(rf":{leaving.nick}!\S+ QUIT :Connection closed")
    assert lusers(witness) == (1, 1)


def test_connect_register_join_quit_cycles_leak_nothing(
    start_server: Start, open_client: Open
) -> None:
    server = start_server("chat")
    observer = registered(open_client, server.port)
    channel = unique_channel()

    def cycles(count: int) -> None:
        for i in range(count):
            with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
                nick = f"cycle{i}"
                sock.sendall(
                    f"NICK {nick}\r\nUSER c 0 * :C\r\nJOIN {channel}\r\n"
                    f"PRIVMSG {channel} :hi\r\nQUIT :bye\r\n".encode()
                )
                while sock.recv(65536):
                    pass  # Read to EOF: the server has forgotten this client.

    # Warm the allocator and the implementation's caches the same way first.
    cycles(100)
    wait_for_lusers(observer, connections=1, channels=0)
    baseline = server.rss()
    cycles(1000)
    wait_for_lusers(observer, connections=1, channels=0)
    growth = server.rss() - baseline
    print(f"\n{server.impl}: RSS {baseline / 2**20:.1f} MiB, +{growth / 2**20:.2f} MiB")
    # A client, its tasks and its queues are tens of KiB: 1000 leaked would be
    # tens of MiB. A few hundred KiB is the allocator's noise.
    assert growth < 2 * 2**20
