"""A private Redis in a subprocess, and a small blocking client to talk to it.

The tests (tests/redisserver.py, the ``redis`` fixture) and the redis-subscriber
experiment start their own ``redis-server`` (Debian's redis-server package,
.ci/debian-packages): nothing is saved to disk, nothing listens but a unix
socket in a directory of the caller's, or 127.0.0.1 for the ``redis://`` form.
It can be stopped, killed with SIGKILL and started again on the same address,
as a network of echochat servers must survive.

Readiness is read, never waited for with a sleep: redis-server runs as if
under systemd (``--supervised systemd``) and sends ``READY=1`` to a datagram
socket of ours once it listens; a poll() on that socket and on a pidfd of the
process wakes on whichever comes first, the signal or its exit. (The socket is
closed once Redis is ready, so at shutdown Redis logs that its STOPPING=1
found nobody: "systemd supervision error: sd_notify: -111", harmless.)
"""

from __future__ import annotations

import os
import select
import shutil
import socket
import subprocess
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import hiredis

REDIS_SERVER = "redis-server"
START_TIMEOUT = 10.0
# A Redis that takes SIGTERM exits within one serverCron tick (100 ms at hz 10);
# one paused (SIGSTOP, CLIENT PAUSE is no obstacle) or busy in DEBUG SLEEP does
# not, and is killed after this long.
STOP_TIMEOUT = 5.0
# Attempts at a free TCP port before giving up: another process may take the
# port between our probe and redis-server's bind().
PORT_ATTEMPTS = 5
# sockaddr_un.sun_path is 108 bytes on Linux, the terminating NUL included.
UNIX_PATH_MAX = 107
READ_SIZE = 65536

# What hiredis.Reader.gets() returns while a reply is incomplete. Its default,
# False, is also a whole RESP3 reply (#f), so a sentinel of our own.
_INCOMPLETE = object()

Address = str | tuple[str, int]
Argument = bytes | str | int | float


class RedisStartError(RuntimeError):
    """redis-server did not start, or did not say it was ready; the message has its log."""


def pack(*arguments: Argument) -> bytes:
    """One command in RESP (an array of bulk strings), as hiredis.pack_command encodes it."""
    # hiredis's stub types the tuple as one element; it takes any number.
    packed: bytes = hiredis.pack_command(arguments)  # type: ignore[arg-type]
    return packed


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the kernel's pick for port 0)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class RedisServer:
    """A redis-server of our own: on ``directory/redis.sock``, or on 127.0.0.1 with ``tcp``.

    Started by the constructor; ``stop()`` (SIGTERM, then SIGKILL after a
    bound), ``kill()`` (SIGKILL) and ``start()`` again keep the same address,
    so clients can reconnect to the same URL. ``options`` are more
    redis-server options, e.g. ``("--client-output-buffer-limit", "pubsub 1mb 0 0")``.

    With ``tcp``, ``bind`` and ``port`` place it elsewhere than 127.0.0.1 at a
    free port, and ``wrapper`` is a command that runs it: the network tests run
    it on a host of their own, ``ip netns exec NAMESPACE redis-server ...`` on
    that host's address (tests/netns.py).
    """

    def __init__(
        self,
        directory: Path,
        *,
        tcp: bool = False,
        options: Sequence[str] = (),
        bind: str = "127.0.0.1",
        port: int | None = None,
        wrapper: Sequence[str] = (),
    ) -> None:
        if shutil.which(REDIS_SERVER) is None:
            raise RedisStartError(
                f"{REDIS_SERVER} is not installed: run .ci/install-debian-packages "
                ".ci/debian-packages (Debian's redis-server package)"
            )
        self.directory = directory
        self.options = tuple(options)
        self.socket_path: Path | None = None if tcp else directory / "redis.sock"
        self.bind = bind
        self.port = port
        self.wrapper = tuple(wrapper)
        self.log_path = directory / "redis.log"
        self._notify_path = directory / "notify.sock"
        for path in (self.socket_path, self._notify_path):
            if path is not None and len(os.fsencode(path)) > UNIX_PATH_MAX:
                raise ValueError(f"unix socket path longer than {UNIX_PATH_MAX} bytes: {path}")
        self.process: subprocess.Popen[bytes] | None = None
        self._log_start = 0
        self.start()

    @property
    def url(self) -> str:
        """What ``echochat serve --redis`` takes: unix:///PATH or redis://HOST:PORT."""
        if self.socket_path is not None:
            return f"unix://{self.socket_path}"
        return f"redis://{self.bind}:{self.port}"

    @property
    def address(self) -> Address:
        """The address to connect() to: a socket path, or (host, port)."""
        if self.socket_path is not None:
            return str(self.socket_path)
        assert self.port is not None
        return (self.bind, self.port)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int:
        if self.process is None:
            raise RuntimeError("redis-server is not running")
        return self.process.pid

    def start(self) -> None:
        """Start redis-server on this server's address and return once it answers PING."""
        if self.running:
            raise RuntimeError("redis-server is already running")
        if self.socket_path is not None:
            self._start(("--port", "0", "--unixsocket", str(self.socket_path),
                         "--unixsocketperm", "700"))  # fmt: skip
            return
        if self.port is not None:
            # Restarted (or given): the same port, which clients reconnect to.
            self._start(self._tcp_listen())
            return
        for attempt in range(1, PORT_ATTEMPTS + 1):
            self.port = free_port()
            try:
                self._start(self._tcp_listen())
            except RedisStartError as error:
                self.port = None
                # Another process took the port since free_port() saw it free.
                if "Address already in use" not in str(error) or attempt == PORT_ATTEMPTS:
                    raise
            else:
                return

    def _tcp_listen(self) -> tuple[str, ...]:
        listen = ("--port", str(self.port), "--bind", self.bind)
        # Protected mode refuses clients from other hosts to a Redis without a
        # password; one bound to a private test network is meant for them.
        return listen if self.bind == "127.0.0.1" else (*listen, "--protected-mode", "no")

    def _start(self, listen: Sequence[str]) -> None:
        # --port 0 turns TCP off; nothing is saved, nothing read from a config file.
        command = [*self.wrapper, REDIS_SERVER, *listen, "--save", "", "--appendonly", "no",
                   "--dir", str(self.directory), "--logfile", str(self.log_path),
                   "--supervised", "systemd", *self.options]  # fmt: skip
        self._notify_path.unlink(missing_ok=True)
        self._log_start = len(self.log())
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
            notify.bind(str(self._notify_path))
            env = {**os.environ, "NOTIFY_SOCKET": str(self._notify_path)}
            # Errors before the log file is open (a bad option) go to stderr: into the log too.
            with self.log_path.open("ab") as log:
                self.process = subprocess.Popen(
                    command, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log
                )
            try:
                self._wait_until_ready(notify, self.process)
            except BaseException:
                self.kill()
                raise
        with RedisClient(self.address) as client:
            if (answer := client.command("PING")) != b"PONG":
                raise RedisStartError(f"redis-server answered PING with {answer!r}")

    def _wait_until_ready(self, notify: socket.socket, process: subprocess.Popen[bytes]) -> None:
        """Read systemd notifications until READY=1, or fail when the process exits first."""
        pidfd = os.pidfd_open(process.pid)
        try:
            poller = select.poll()
            poller.register(notify, select.POLLIN)
            poller.register(pidfd, select.POLLIN)
            deadline = time.monotonic() + START_TIMEOUT
            while (left := deadline - time.monotonic()) > 0:
                events = dict(poller.poll(left * 1000))
                if notify.fileno() in events and b"READY=1" in notify.recv(4096):
                    return
                if pidfd in events:
                    process.wait()
                    raise RedisStartError(
                        f"redis-server exited with {process.returncode}:\n{self._this_start()}"
                    )
        finally:
            os.close(pidfd)
        raise RedisStartError(
            f"redis-server sent no READY=1 within {START_TIMEOUT} s (built without "
            f"libsystemd?):\n{self._this_start()}"
        )

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM, and SIGKILL if it has not exited within ``timeout`` seconds."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def kill(self) -> None:
        """SIGKILL at once, as a crash would: the socket file stays, clients see a reset."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def client(self, timeout: float = 5.0) -> RedisClient:
        return RedisClient(self.address, timeout)

    def log(self) -> str:
        """What redis-server logged, every start included (it appends)."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def _this_start(self) -> str:
        """What the last start logged, for an error message (the file keeps every start)."""
        return self.log()[self._log_start :][-4000:]

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


class RedisClient:
    """A blocking connection to Redis that parses replies with hiredis.Reader.

    ``command()`` sends one command and returns its reply, raising
    hiredis.ReplyError for an error reply (the Reader returns those, it does
    not raise them). ``send()`` and ``read()`` separately pipeline commands
    and read pushes (after SUBSCRIBE, messages come with no command).
    """

    def __init__(self, address: Address, timeout: float = 5.0) -> None:
        family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(address)
        except BaseException:
            self.sock.close()
            raise
        self.reader = hiredis.Reader(notEnoughData=_INCOMPLETE)

    def send(self, *arguments: Argument) -> None:
        self.sock.sendall(pack(*arguments))

    def send_many(self, commands: Iterable[Sequence[Argument]]) -> None:
        """Several commands in one write (a pipeline); read their replies with read()."""
        self.sock.sendall(b"".join(pack(*command) for command in commands))

    def read(self) -> Any:
        """The next reply or push, error replies included as hiredis.ReplyError values.

        Raises TimeoutError if none arrives within the timeout, ConnectionError at EOF.
        """
        while (reply := self.reader.gets()) is _INCOMPLETE:
            data = self.sock.recv(READ_SIZE)
            if not data:
                raise ConnectionError("Redis closed the connection")
            self.reader.feed(data)
        return reply

    def command(self, *arguments: Argument) -> Any:
        """Send one command and return its reply; an error reply is raised."""
        self.send(*arguments)
        reply = self.read()
        if isinstance(reply, hiredis.ReplyError):
            raise reply
        return reply

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def client_list(client: RedisClient, *filters: Argument) -> list[dict[str, str]]:
    """CLIENT LIST [filters], one dict of fields per connection (id, name, omem, obl, ...)."""
    listing: bytes = client.command("CLIENT", "LIST", *filters)
    return [
        dict(field.split("=", 1) for field in line.split(" "))
        for line in listing.decode().splitlines()
    ]
