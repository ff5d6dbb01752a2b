"""An echochat server (or any server that speaks its first line) in a subprocess.

The benchmarks, the experiments and the tests all start servers this way: on
127.0.0.1 with a free port, read from the one line the server prints once it
listens, and stopped with a signal that must end it cleanly.
"""

from __future__ import annotations

import re
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Self

import psutil

from echochat.registry import BY_NAME, EventLoop, configuration_id

# The address is --host's: 127.0.0.1 unless the caller chose another (the network
# tests serve on the addresses of their own hosts, tests/netns.py).
_LISTENING = re.compile(r"listening on [\d.]+:(\d+)(?:, TLS on [\d.]+:(\d+))?\n")
# Load comes from many clients on 127.0.0.1 sending as fast as they can, so
# chat servers under load run with flood control and the per-IP limit off.
CHAT_LOAD_OPTIONS = ("--flood-rate", "0", "--max-per-ip", "0")


def echochat_command(impl: str, service: str, *options: str, loop: EventLoop) -> list[str]:
    """The command line of ``echochat serve`` on 127.0.0.1 with a free port, in this Python."""
    return serve_command(sys.executable, impl, service, "--loop", loop, *options)


def serve_command(python: str | Path, impl: str, service: str, *options: str) -> list[str]:
    """``echochat serve`` on 127.0.0.1 with a free port, run by ``python`` (any checkout's).

    Chat servers get CHAT_LOAD_OPTIONS; a caller's own ``options`` come later and win.
    ``bench versions`` starts an older checkout's servers with it too, so it
    names nothing else a version could lack (not even ``--loop``: asyncio's
    own loop is every version's default).
    """
    command = [str(python), "-m", "echochat", "serve", "--impl", impl, "--service", service]
    command += ["--host", "127.0.0.1", "--port", "0"]
    if service == "chat":
        command += CHAT_LOAD_OPTIONS
    return command + list(options)


def throwaway_certificate(directory: Path, name: str = "server") -> tuple[Path, Path]:
    """A new self-signed certificate for localhost and 127.0.0.1, valid a day, and its key.

    Made with the openssl command: a P-256 key, and both names as subjectAltName,
    which is what clients check (openssl s_client -verify_hostname, Python's ssl).
    Returns (certificate, key), PEM files in ``directory``.
    """
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    command = ["openssl", "req", "-x509", "-nodes", "-days", "1", "-subj", "/CN=localhost",
               "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
               "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
               "-keyout", str(key), "-out", str(cert)]  # fmt: skip
    subprocess.run(command, check=True, capture_output=True, timeout=30)
    return cert, key


class ProcessMeter:
    """A running process's memory and CPU time (its own, not its children's), which psutil
    reads from /proc/PID/stat and /proc/PID/statm."""

    def __init__(self, pid: int) -> None:
        self._ps = psutil.Process(pid)

    def rss(self) -> int:
        return int(self._ps.memory_info().rss)

    def cpu_seconds(self) -> float:
        times = self._ps.cpu_times()
        return float(times.user + times.system)


class ServerUnderTest:
    """A server in a subprocess that prints ``listening on HOST:PORT`` first.

    ``ca``: the server speaks TLS on ``port`` with a certificate that this file
    (a certificate or its CA) checks; None for plain TCP.
    """

    def __init__(
        self,
        label: str,
        command: list[str],
        env: dict[str, str] | None = None,
        ca: Path | None = None,
    ) -> None:
        self.label = label
        self.ca = ca
        # Logs go to a file: a pipe nobody reads could block the server.
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115  (closed by stop())
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=self._stderr, env=env, text=True
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        match = _LISTENING.fullmatch(line)
        if match is None:
            self.process.kill()
            self.process.wait()
            stderr = self.stderr()
            self._close_files()
            raise RuntimeError(f"{self.label} did not start: {line!r}; stderr: {stderr}")
        self.port = int(match.group(1))
        # With --tls-port: where TLS listens beside plain TCP on ``port``.
        self.tls_port = None if match.group(2) is None else int(match.group(2))
        self.meter = ProcessMeter(self.process.pid)

    @classmethod
    def echochat(
        cls,
        impl: str,
        service: str,
        *options: str,
        loop: EventLoop = "asyncio",
        env: dict[str, str] | None = None,
    ) -> ServerUnderTest:
        """``echochat serve`` with a free port; labelled ``impl`` or ``impl+loop``."""
        command = echochat_command(impl, service, *options, loop=loop)
        return cls(configuration_id(BY_NAME[impl], loop), command, env)

    def stderr(self) -> str:
        """What the server has logged so far."""
        if self._stderr.closed:
            return ""
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")

    def rss(self) -> int:
        return self.meter.rss()

    def cpu_seconds(self) -> float:
        return self.meter.cpu_seconds()

    def warm_up(self) -> None:
        """One connection that sends, reads back and closes, the same for every server.

        A cold asyncio server reads into a 256 KiB buffer that costs an mmap
        per read until a connection's EOF lets glibc raise its mmap
        threshold, making it up to 1.7x slower at first (docs/performance.md).
        """
        with self.connect(timeout=10) as sock:
            sock.sendall(b"PING :warm-up\r\n")
            sock.recv(65536)
            if self.ca is None:
                # Only the server's reading of our EOF frees its read buffer and
                # raises the threshold: wait until it has (it then closes its side),
                # or the load that follows races the warm-up (a busy machine lost it).
                sock.shutdown(socket.SHUT_WR)
                while sock.recv(65536):
                    pass

    def connect(self, timeout: float) -> socket.socket:
        """A client connection to ``port``, over TLS (checking the certificate) if it speaks TLS."""
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        if self.ca is None:
            return sock
        client = ssl.create_default_context(cafile=str(self.ca))
        try:
            return client.wrap_socket(sock, server_hostname="localhost")
        except BaseException:
            sock.close()
            raise

    def finish(self, signum: int = signal.SIGTERM, timeout: float = 10.0) -> tuple[float, str, str]:
        """Signal the server and wait for it to exit; return the time taken, its stdout and stderr.

        Raises RuntimeError if it did not exit within ``timeout`` (it is then
        killed) or exited with a status other than 0.
        """
        started = time.monotonic()
        if self.process.poll() is None:
            self.process.send_signal(signum)
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            stderr = self.stderr()
            self.kill()
            raise RuntimeError(
                f"{self.label} did not exit within {timeout} s; stderr:\n{stderr[-4000:]}"
            ) from None
        elapsed = time.monotonic() - started
        assert self.process.stdout is not None
        stdout = self.process.stdout.read()
        stderr = self.stderr()
        self._close_files()
        if code != 0:
            raise RuntimeError(f"{self.label} exited with {code}; stderr:\n{stderr[-4000:]}")
        return elapsed, stdout, stderr

    def stop(self) -> float:
        """SIGTERM, then insist on a clean exit (a crash must not pass as a measurement).

        Returns how long the server took to exit.
        """
        elapsed, _, stderr = self.finish()
        if "Traceback" in stderr:
            raise RuntimeError(f"{self.label} logged a traceback:\n{stderr[-4000:]}")
        return elapsed

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._close_files()

    def _close_files(self) -> None:
        if self.process.stdout is not None:
            self.process.stdout.close()
        self._stderr.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.stop()
        else:
            self.kill()
