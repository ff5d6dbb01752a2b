"""The contract over TLS, against every implementation: key behaviours, bad clients, a real client.

Not the whole suite a second time: registration and chat (beside plain TCP on
one server), SendQ, flood control and keepalive, graceful shutdown, echo and its
backpressure, what a client that fails the handshake leaves behind, and openssl
s_client for chat and echo. The certificate is made for this module with the
openssl command (tests/certs.py).
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import selectors
import signal
import socket
import ssl
import struct
import subprocess
import time
from collections.abc import Callable, Iterator

import pytest

from certs import Certificate, make_certificate
from echochat.registry import parse_configuration
from flood import MiB, expected_echo, receive_exactly, send_without_reading
from irc import IrcClient, TlsIrcClient, unique_channel, unique_nick
from servers import IMPLS, ServerProcess

Start = Callable[..., ServerProcess]
Open = Callable[..., IrcClient]
OpenTls = Callable[..., TlsIrcClient]
SERVER = "echochat.local"
# One TLS record's worth of plaintext at most: how the non-reading client sends.
RECORD = 16384


@pytest.fixture(scope="module", params=[c for c in IMPLS if parse_configuration(c)[0].tls])
def impl(request: pytest.FixtureRequest) -> str:
    """Every implementation that offers TLS; test_tls_refused.py holds the one that does not."""
    return str(request.param)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    return make_certificate(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def tls_chat_server(impl: str, certificate: Certificate) -> Iterator[ServerProcess]:
    """Plain TCP on its port and TLS on its TLS port, shared by the tests that use unique nicks."""
    options = ("--tls-port", "0", *certificate.options(), "--log-level", "debug")
    with ServerProcess(impl, "chat", *options) as server:
        yield server


@pytest.fixture
def open_tls(certificate: Certificate) -> Iterator[OpenTls]:
    """Open TLS IRC clients to any port: ``open_tls(port, rcvbuf=...)``; all closed at the end."""
    clients: list[TlsIrcClient] = []

    def open_one(port: int, **options: int) -> TlsIrcClient:
        client = TlsIrcClient(port, certificate.cert, **options)
        clients.append(client)
        return client

    yield open_one
    for client in clients:
        client.close()


def tls_port(server: ServerProcess) -> int:
    assert server.tls_port is not None, "the server announced no TLS port"
    return server.tls_port


def member(client: IrcClient, channel: str) -> IrcClient:
    client.register(unique_nick())
    client.join(channel)
    return client


def test_tls_and_plain_clients_chat_on_one_server(
    tls_chat_server: ServerProcess, open_tls: OpenTls, open_client: Open
) -> None:
    channel = unique_channel()
    secure = member(open_tls(tls_port(tls_chat_server)), channel)
    assert isinstance(secure.sock, ssl.SSLSocket)
    assert secure.sock.version() in ("TLSv1.2", "TLSv1.3")
    plain = member(open_client(tls_chat_server.port), channel)
    secure.read_until(rf":{plain.nick}!\S+ JOIN {channel}")
    secure.send(f"PRIVMSG {channel} :over TLS")
    plain.expect(rf":{secure.nick}!u@127\.0\.0\.1 PRIVMSG {channel} :over TLS")
    plain.send(f"PRIVMSG {channel} :over TCP")
    secure.expect(rf":{plain.nick}!u@127\.0\.0\.1 PRIVMSG {channel} :over TCP")
    assert plain.sync() == []


def test_tls_older_than_1_2_is_refused(
    tls_chat_server: ServerProcess, certificate: Certificate, open_client: Open
) -> None:
    # The client's own OpenSSL offers TLS 1.1 only at security level 0.
    result = subprocess.run(
        [*s_client(tls_port(tls_chat_server), certificate), "-tls1_1", "-cipher",
         "DEFAULT@SECLEVEL=0"],
        input="",
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )  # fmt: skip
    assert result.returncode != 0, result
    tls_chat_server.wait_for_log("UNSUPPORTED_PROTOCOL")
    # Refused, and the server goes on.
    open_client(tls_chat_server.port).register(unique_nick())


def open_descriptors(server: ServerProcess) -> int:
    return len(os.listdir(f"/proc/{server.process.pid}/fd"))


def wait_for_descriptors(server: ServerProcess, count: int, timeout: float = 10.0) -> None:
    """Until the server has ``count`` descriptors open: it closes sockets in its own time."""
    deadline = time.monotonic() + timeout
    while (now := open_descriptors(server)) != count:
        assert time.monotonic() < deadline, f"{server.impl}: {now} descriptors, not {count}"
        time.sleep(0.02)  # /proc has no event to wait on.


def closed_by_server(sock: socket.socket) -> bool:
    """True once the server has closed ``sock`` (EOF or reset); waits up to the socket's timeout."""
    try:
        return sock.recv(4096) == b""
    except ConnectionResetError:
        return True


def still_open(sock: socket.socket) -> bool:
    """True if nothing (no EOF, no reset) has arrived on ``sock``, without waiting."""
    readable, _, _ = select.select([sock], [], [], 0)
    return not readable


def test_bad_clients_in_the_handshake_are_closed_and_leave_nothing_behind(
    start_server: Start, certificate: Certificate, open_tls: OpenTls
) -> None:
    timeout = 2.0
    server = start_server(
        "chat", *certificate.options(), "--registration-timeout", str(timeout), "--log-level",
        "debug",
    )  # fmt: skip
    open_tls(server.port).register(unique_nick())  # Everything a connection needs, allocated.
    baseline = open_descriptors(server) - 1  # Without that client's socket.
    # A client that speaks plain IRC to the TLS port.
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as plain_text:
        plain_text.sendall(b"NICK plain\r\nUSER plain 0 * :Plain\r\n")
        assert closed_by_server(plain_text)
    # A client that resets in the middle of its ClientHello.
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as resetting:
        resetting.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + os.urandom(40))
        resetting.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    # A client that stalls in the handshake: it never blocks anyone else...
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as stalled:
        stalled.sendall(b"\x16\x03\x01")  # The first bytes of a record, and no more.
        other = open_tls(server.port)
        other.register(unique_nick())
        assert still_open(stalled), "the handshake timed out before another client registered"
        # ...and the server closes it once the registration timeout has passed.
        assert closed_by_server(stalled)
        assert time.monotonic() - started >= timeout - 0.05
    other.close()
    # Every bad client's socket is closed and its task gone: only the first client's left.
    wait_for_descriptors(server, baseline + 1)
    log = server.wait_for_log("WRONG_VERSION_NUMBER")
    assert re.search(r" DEBUG \S+: .*WRONG_VERSION_NUMBER", log), log
    server.stop()  # Asserts a clean exit: no traceback, no warning, no task left pending.


@pytest.mark.parametrize("service", ["chat", "echo"])
def test_a_corrupt_record_after_the_handshake_closes_that_connection_quietly(
    start_server: Start, certificate: Certificate, service: str
) -> None:
    """A record that does not decrypt (bad record MAC) is a broken connection, not a bug."""
    server = start_server(service, *certificate.options())
    secure = tls_connect(server.port, certificate)
    secure.sendall(b"PING :before\r\n")
    # Under the TLS layer: an application-data record of zeros, which no key decrypts.
    with socket.socket(fileno=secure.detach()) as raw:
        raw.sendall(b"\x17\x03\x03\x00\x20" + bytes(32))
        raw.settimeout(10)
        while raw.recv(65536):  # Whatever the server still sends, then its close.
            pass
    server.stop()  # Asserts a clean log: no traceback, no ERROR.


def test_member_that_never_reads_over_tls_is_dropped_for_sendq(
    start_server: Start, certificate: Certificate, open_tls: OpenTls
) -> None:
    server = start_server("chat", *certificate.options(), "--sendq", "32768")
    channel = unique_channel()
    stalled = member(open_tls(server.port, rcvbuf=4096), channel)
    sender = member(open_tls(server.port), channel)
    reader = member(open_tls(server.port), channel)
    sender.sync()
    reader.sync()
    text = "x" * 200
    sent, batch, seen = 0, 50, list[str]()
    while not any(" QUIT " in line for line in seen):
        assert sent < 20_000, "the stalled member was never dropped"
        sender.send(*(f"PRIVMSG {channel} :{sent + i} {text}" for i in range(batch)))
        sent += batch
        seen = reader.read_until(rf":{sender.nick}!\S+ PRIVMSG {channel} :{sent - 1} x+")
    assert [line for line in seen if " QUIT " in line] == [
        f":{stalled.nick}!u@127.0.0.1 QUIT :SendQ exceeded"
    ]
    assert sent > 32768 // len(text), "dropped before its SendQ could have filled"
    received = stalled.expect_eof()
    numbers = [int(m.group(1)) for line in received if (m := re.search(r" :(\d+) x+$", line))]
    assert numbers == list(range(len(numbers))), "not a prefix of what was sent"
    assert sender.sync() == [f":{stalled.nick}!u@127.0.0.1 QUIT :SendQ exceeded"]


def test_flood_control_and_keepalive_over_tls(
    start_server: Start, certificate: Certificate, open_tls: OpenTls
) -> None:
    server = start_server(
        "chat", *certificate.options(), "--flood-burst", "5", "--flood-rate", "1",
        "--recvq", "2048", "--ping-interval", "0.5", "--ping-timeout", "0.5",
    )  # fmt: skip
    channel = unique_channel()
    flooder = member(open_tls(server.port), channel)
    silent = member(open_tls(server.port), channel)
    flooder.send(*(f"PRIVMSG {channel} :{i} {'y' * 100}" for i in range(100)))
    lines = flooder.expect_eof()
    assert lines[-1] == "ERROR :Closing link (Excess Flood)", lines[-3:]
    lines = silent.expect_eof()
    assert f"PING :{SERVER}" in lines
    assert lines[-1] == "ERROR :Closing link (Ping timeout: 0.5 seconds)", lines[-3:]


def test_graceful_shutdown_over_tls(
    start_server: Start, certificate: Certificate, open_tls: OpenTls
) -> None:
    """Idle clients, one that does not read with megabytes queued, one stalled in the handshake."""
    server = start_server("chat", *certificate.options(), "--sendq", "16000000")
    channel = unique_channel()
    member(open_tls(server.port, rcvbuf=4096), channel)  # Never reads.
    sender = member(open_tls(server.port), channel)
    idle = [open_tls(server.port) for _ in range(20)]
    for batch in range(20):
        sender.send(*(f"PRIVMSG {channel} :{batch}.{i} {'z' * 200}" for i in range(500)))
    assert sender.sync() == []
    assert idle[-1].sync() == []
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as handshaking:
        assert still_open(handshaking)
        assert server.stop(signal.SIGTERM) < 5.0  # Asserts exit 0 and a clean stderr.
    for client in [sender, *idle]:
        lines = client.expect_eof()
        assert lines[-1:] == ["ERROR :Server shutting down"], lines


def tls_connect(port: int, certificate: Certificate, rcvbuf: int | None = None) -> ssl.SSLSocket:
    sock = socket.socket()
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", port))
    context = ssl.create_default_context(cafile=str(certificate.cert))
    return context.wrap_socket(sock, server_hostname="localhost")


def echo_while_sending(sock: ssl.SSLSocket, payload: bytes, timeout: float = 10.0) -> bytes:
    """Send ``payload`` while reading what comes back, until as much has come back.

    Both in this thread, the socket non-blocking: the server reads only as fast
    as we do. Not a sending thread beside a reading one, as test_echo.py has: an
    SSL object must not be read and written from two threads at once (OpenSSL's
    rule, openssl/openssl#20446); on a busy machine that broke the records now
    and then, and the server rightly closed the connection.
    """
    sock.setblocking(False)
    sent, received = 0, bytearray()
    with selectors.DefaultSelector() as selector:
        selector.register(sock, selectors.EVENT_READ | selectors.EVENT_WRITE)
        while len(received) < len(payload):
            if sent == len(payload):
                selector.modify(sock, selectors.EVENT_READ)
            assert selector.select(timeout), f"stalled after {len(received)} bytes back"
            try:
                while chunk := sock.recv(MiB):  # Also what is decrypted but not yet read.
                    received += chunk
                raise AssertionError(f"EOF after {len(received)} of {len(payload)} bytes")
            except ssl.SSLWantReadError:
                pass
            if sent < len(payload):
                # A send that must be retried is retried with the same bytes.
                with contextlib.suppress(ssl.SSLWantWriteError, ssl.SSLWantReadError):
                    sent += sock.send(payload[sent : sent + RECORD])
    sock.setblocking(True)
    sock.settimeout(10)
    return bytes(received)


def test_echo_over_tls_comes_back_exactly_and_a_non_reader_cannot_grow_the_server(
    start_server: Start, certificate: Certificate
) -> None:
    server = start_server("echo", *certificate.options())
    payload = os.urandom(MiB)
    with tls_connect(server.port, certificate) as sock:
        assert echo_while_sending(sock, payload) == payload
    baseline = server.rss()
    with tls_connect(server.port, certificate, rcvbuf=4096) as sock:
        sent = send_without_reading(sock, 200 * MiB, chunk=RECORD)
        grown = server.rss() - baseline
        print(f"{server.impl}: sent {sent / MiB:.1f} MiB; RSS + {grown / MiB:.1f} MiB")
        assert sent < 64 * MiB, "the server did not stop reading"
        # The bound of the plain test (test_echo.py): the TLS buffers (the SSL
        # object's, asyncio's TLS transport's) add well under 1 MiB per connection.
        assert grown < (16 * MiB if server.impl == "anyio-asyncio+uvloop" else 4 * MiB)
        sock.settimeout(10)
        assert receive_exactly(sock, sent) == expected_echo(sent)


def s_client(port: int, certificate: Certificate) -> list[str]:
    """openssl s_client, checking the certificate for localhost; -quiet: data only on stdout."""
    return ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-quiet",
            "-verify_return_error", "-CAfile", str(certificate.cert),
            "-verify_hostname", "localhost"]  # fmt: skip


def test_openssl_s_client_chats(tls_chat_server: ServerProcess, certificate: Certificate) -> None:
    nick = unique_nick()
    # -crlf: each LF typed becomes CR LF; -quiet keeps it running after stdin's
    # end, until the server closes the connection after QUIT.
    result = subprocess.run(
        [*s_client(tls_port(tls_chat_server), certificate), "-crlf"],
        input=f"NICK {nick}\nUSER {nick} 0 * :s_client\nQUIT :done\n",
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert any(line.startswith(f":{SERVER} 001 {nick} ") for line in lines), lines
    assert lines[-1] == "ERROR :Closing link (Quit: done)", lines


def test_openssl_s_client_echoes(start_server: Start, certificate: Certificate) -> None:
    server = start_server("echo", *certificate.options())
    client = subprocess.Popen(
        s_client(server.port, certificate),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert client.stdin is not None
    assert client.stdout is not None
    try:
        client.stdin.write(b"echo over TLS\n")
        client.stdin.flush()
        readable, _, _ = select.select([client.stdout], [], [], 20)
        assert readable, "no echo within 20 s"
        assert client.stdout.readline() == b"echo over TLS\n"
    finally:
        client.terminate()
        client.communicate(timeout=10)
