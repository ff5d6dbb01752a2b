"""Build the benchmark's C programs: the epoll echo server and the native load generator.

``epoll_echo.c`` is the machine's ceiling in the echo benchmark;
``epoll_client.c`` is echo.py's closed loop in C, so that the fastest servers
are not measured against a client that is itself at 100 % of a core.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

SERVER_SOURCE = Path(__file__).with_name("epoll_echo.c")
CLIENT_SOURCE = Path(__file__).with_name("epoll_client.c")
COMPILE_TIMEOUT = 60.0


@dataclass(frozen=True, slots=True)
class Build:
    """The compiled program, or None and why there is none (say it in the report, then skip)."""

    binary: Path | None
    reason: str = ""


def build_epoll_echo(cache: Path | None = None) -> Build:
    return build(SERVER_SOURCE, cache)


def build_epoll_client(cache: Path | None = None) -> Build:
    return build(CLIENT_SOURCE, cache)


def build(source_path: Path, cache: Path | None = None) -> Build:
    """Compile with ``gcc -O2`` once per version of the source; later calls reuse the binary."""
    gcc = shutil.which("gcc")
    if gcc is None:
        return Build(None, "no gcc on PATH")
    source = source_path.read_bytes()
    # Named after the source's hash, so an edited source is rebuilt and a
    # stale binary is never measured.
    digest = hashlib.sha256(source).hexdigest()[:16]
    directory = cache if cache is not None else Path(tempfile.gettempdir()) / "echochat-bench"
    binary = directory / f"{source_path.stem}-{digest}"
    if binary.exists():
        return Build(binary)
    directory.mkdir(parents=True, exist_ok=True)
    # Compile to a private name and rename: two test runs building at once
    # must never execute a half-written binary.
    partial = directory / f".{binary.name}.{os.getpid()}"
    command = [gcc, "-O2", "-Wall", "-Wextra", "-o", str(partial), str(source_path)]
    try:
        subprocess.run(command, capture_output=True, text=True, check=True, timeout=COMPILE_TIMEOUT)
    except subprocess.CalledProcessError as error:
        return Build(None, f"gcc failed: {error.stderr.strip()}")
    except subprocess.TimeoutExpired:
        return Build(None, f"gcc took more than {COMPILE_TIMEOUT:.0f} s")
    partial.replace(binary)
    return Build(binary)
