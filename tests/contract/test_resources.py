"""When the process runs out: descriptors, connection storms, the listen backlog, ``--max-clients``.

Every implementation accepts in a loop of its own (``accept_loop`` in each
server.py) paced by the core's AcceptPacer, and listens with one backlog
(docs/sidebyside/running-out.md). Storms here are short and bounded in count
and time; their load comes from threads of this process, which only connect.
"""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from collections.abc import Callable

import pytest

from echochat.options import system_backlog_limit
from irc import IrcClient, unique_channel, unique_nick
from servers import ServerProcess

Start = Callable[..., ServerProcess]
Open = Callable[..., IrcClient]

PAUSED = "not accepting new connections"
RESUMED = "accepting again"
SPARE = 8  # descriptors the server may still open once its limit is lowered
QUEUED = 32  # connections that wait in the kernel's queue meanwhile
STORM_SECONDS = 1.5
STORM_THREADS = 8
STORM_MAX = 20_000  # connections per storm at most, whatever the speed


def chatting_pair(port: int, open_client: Open) -> tuple[IrcClient, IrcClient, str]:
    channel = unique_channel()
    pair = open_client(port), open_client(port)
    for client in pair:
        client.register(unique_nick())
        client.join(channel)
    pair[0].read_until(rf":{pair[1].nick}!\S+ JOIN {channel}")
    return pair[0], pair[1], channel


def say(sender: IrcClient, receiver: IrcClient, channel: str, text: str) -> None:
    """One message through the server, and back to the sender's PING: both served."""
    sender.send(f"PRIVMSG {channel} :{text}")
    receiver.expect(rf":{sender.nick}!\S+ PRIVMSG {channel} :{text}")
    assert sender.sync() == []


def test_running_out_of_descriptors_pauses_accepting_until_some_are_free(
    start_server: Start, open_client: Open
) -> None:
    server = start_server("chat")
    alice, bob, channel = chatting_pair(server.port, open_client)
    server.limit_open_files(spare=SPARE)
    # The kernel completes these connections and queues them for accept().
    waiting = [
        socket.create_connection(("127.0.0.1", server.port), timeout=10)
        for _ in range(SPARE + QUEUED)
    ]
    server.wait_for_log(PAUSED)
    # Those already connected are served as before.
    say(alice, bob, channel, "still served")
    say(bob, alice, channel, "me too")
    for sock in waiting:
        sock.close()
    # A new client gets in as soon as the queued ones (now closed) are cleared.
    started = time.monotonic()
    carol = open_client(server.port)
    carol.register(unique_nick())
    served_after = time.monotonic() - started
    log = server.wait_for_log(RESUMED)
    assert served_after < 3.0, f"a new client waited {served_after:.1f} s"
    say(alice, bob, channel, "after")
    # One warning when accepting pauses and one when it resumes, with the
    # count; the clean stop (start_server) checks there is no traceback or ERROR.
    assert log.count(PAUSED) == 1, log
    assert log.count(RESUMED) == 1, log
    assert "accept() failed: EMFILE (Too many open files)" in log


class Storm:
    """Threads that connect and close as fast as the server lets them, for a bounded time."""

    def __init__(self, port: int, one_connection: Callable[[socket.socket], None]) -> None:
        self.port = port
        self.one_connection = one_connection
        self.completed = 0
        self.failed: list[BaseException] = []
        self._lock = threading.Lock()
        self._deadline = time.monotonic() + STORM_SECONDS
        self._threads = [threading.Thread(target=self._run) for _ in range(STORM_THREADS)]
        for thread in self._threads:
            thread.start()

    def running(self) -> bool:
        return any(thread.is_alive() for thread in self._threads)

    def join(self) -> None:
        for thread in self._threads:
            thread.join()

    def _run(self) -> None:
        while time.monotonic() < self._deadline and self.completed < STORM_MAX:
            try:
                sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
                self.one_connection(sock)
            except OSError as error:
                with self._lock:
                    self.failed.append(error)
                return
            with self._lock:
                self.completed += 1


def quit_at_once(sock: socket.socket) -> None:
    """Connect, QUIT and read to the end: a complete connection, the server's work included."""
    with sock:
        sock.sendall(b"QUIT\r\n")
        received = b""
        while chunk := sock.recv(4096):
            received += chunk
    assert received.startswith(b"ERROR :Closing link"), received


def test_registered_clients_keep_chatting_through_a_connection_storm(
    start_server: Start, open_client: Open
) -> None:
    server = start_server("chat")
    alice, bob, channel = chatting_pair(server.port, open_client)
    storm = Storm(server.port, quit_at_once)
    said = 0
    while storm.running():
        say(alice, bob, channel, f"message {said}")
        said += 1
    storm.join()
    assert storm.failed == []
    assert storm.completed >= 100, f"only {storm.completed} connections in the storm"
    assert said >= 10, f"only {said} messages during the storm"


def test_a_storm_over_max_clients_is_refused_without_ever_exceeding_it(
    start_server: Start, open_client: Open
) -> None:
    server = start_server("chat", "--max-clients", "6")
    alice, bob, channel = chatting_pair(server.port, open_client)
    others = [open_client(server.port) for _ in range(2)]
    for client in others:
        client.register(unique_nick())
    admitted: list[socket.socket] = []
    refused: list[bytes] = []  # list.append is atomic between threads; += is not

    def admitted_or_refused(sock: socket.socket) -> None:
        """An admitted connection answers PING and stays open to the end; a refused one is told."""
        sock.sendall(b"PING :storm\r\n")
        line = sock.recv(4096)
        if b" PONG " in line:
            admitted.append(sock)
            return
        assert line == b"ERROR :Closing link (Server is full)\r\n", line
        sock.close()
        refused.append(line)

    storm = Storm(server.port, admitted_or_refused)
    said = 0
    while storm.running():
        say(alice, bob, channel, f"message {said}")
        said += 1
    storm.join()
    for sock in admitted:
        sock.close()
    assert storm.failed == []
    # 4 clients were in: exactly 2 more fit, and never more.
    assert len(admitted) == 2, f"{len(admitted)} admitted beyond the 4 already in"
    assert len(refused) >= 100, f"only {len(refused)} refused"
    assert said >= 10


def listen_backlog(port: int) -> int:
    """The backlog of the socket listening on ``port``: ``ss`` shows it as Send-Q."""
    shown = subprocess.run(
        ["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True, check=True
    ).stdout.split()
    return int(shown[2])


@pytest.mark.skipif(
    system_backlog_limit() is None, reason="needs Linux's /proc/sys/net/core/somaxconn"
)
@pytest.mark.parametrize("requested", [None, 64], ids=["default", "backlog-64"])
def test_every_implementation_listens_with_one_backlog(
    start_server: Start, requested: int | None
) -> None:
    options = () if requested is None else ("--backlog", str(requested))
    server = start_server("echo", *options)
    assert listen_backlog(server.port) == (requested or system_backlog_limit())
