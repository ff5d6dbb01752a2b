"""Build the benchmark's C programs: the epoll echo server and the native load generator.

``epoll_echo.c`` is the machine's ceiling in the echo benchmark;
``epoll_client.c`` is echo.py's closed loop in C, so that the fastest servers
are not measured against a client that is itself at 100 % of a core. The
client is built with OpenSSL when its headers are there (Debian's
libssl-dev), so that it can load TLS servers too; without them it is built
for plain TCP only and says why.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

SERVER_SOURCE = Path(__file__).with_name("epoll_echo.c")
CLIENT_SOURCE = Path(__file__).with_name("epoll_client.c")
COMPILE_TIMEOUT = 60.0
# epoll_client.c with TLS: its #ifdef ECHO_TLS parts, linked with OpenSSL.
TLS_FLAGS = ("-DECHO_TLS",)
TLS_LIBRARIES = ("-lssl", "-lcrypto")
# What gcc says when they are not installed: "fatal error: openssl/err.h: No such file ...".
MISSING_OPENSSL = re.compile(r"openssl/\w+\.h: No such file")


@dataclass(frozen=True, slots=True)
class Build:
    """The compiled program, or None and why there is none (say it in the report, then skip)."""

    binary: Path | None
    reason: str = ""
    tls: bool = False  # the client speaks TLS (--tls-ca)


def build_epoll_echo(cache: Path | None = None) -> Build:
    return build(SERVER_SOURCE, cache)


def build_epoll_client(cache: Path | None = None) -> Build:
    """With TLS if OpenSSL's headers are there; else plain TCP only, saying why in ``reason``."""
    with_tls = build(CLIENT_SOURCE, cache, TLS_FLAGS, TLS_LIBRARIES)
    if with_tls.binary is not None:
        return Build(with_tls.binary, tls=True)
    plain = build(CLIENT_SOURCE, cache)
    if plain.binary is None:
        return plain
    return Build(plain.binary, f"built without TLS: {with_tls.reason}")


def build(
    source_path: Path,
    cache: Path | None = None,
    flags: tuple[str, ...] = (),
    libraries: tuple[str, ...] = (),
) -> Build:
    """Compile with ``gcc -O2`` once per version of the source; later calls reuse the binary."""
    gcc = shutil.which("gcc")
    if gcc is None:
        return Build(None, "no gcc on PATH")
    source = source_path.read_bytes()
    # Named after the source's hash and the flags, so an edited source is
    # rebuilt and a stale binary is never measured.
    digest = hashlib.sha256(source + " ".join(flags + libraries).encode()).hexdigest()[:16]
    directory = cache if cache is not None else Path(tempfile.gettempdir()) / "echochat-bench"
    binary = directory / f"{source_path.stem}-{digest}"
    if binary.exists():
        return Build(binary)
    directory.mkdir(parents=True, exist_ok=True)
    # Compile to a private name and rename: two test runs building at once
    # must never execute a half-written binary.
    partial = directory / f".{binary.name}.{os.getpid()}"
    command = [gcc, "-O2", "-Wall", "-Wextra", *flags, "-o", str(partial), str(source_path)]
    try:
        subprocess.run(
            [*command, *libraries],
            capture_output=True,
            text=True,
            check=True,
            timeout=COMPILE_TIMEOUT,
        )
    except subprocess.CalledProcessError as error:
        if MISSING_OPENSSL.search(error.stderr):
            return Build(None, "OpenSSL's headers are missing (Debian: apt-get install libssl-dev)")
        return Build(None, f"gcc failed: {error.stderr.strip()}")
    except subprocess.TimeoutExpired:
        return Build(None, f"gcc took more than {COMPILE_TIMEOUT:.0f} s")
    partial.replace(binary)
    return Build(binary)
