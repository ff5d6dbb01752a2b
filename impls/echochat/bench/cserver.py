"""Build the C epoll echo server (``epoll_echo.c``), the machine's ceiling in the echo benchmark."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

SOURCE = Path(__file__).with_name("epoll_echo.c")
COMPILE_TIMEOUT = 60.0


@dataclass(frozen=True, slots=True)
class Build:
    """The compiled server, or None and why there is none (say it in the report, then skip)."""

    binary: Path | None
    reason: str = ""


def build_epoll_echo(cache: Path | None = None) -> Build:
    """Compile with ``gcc -O2`` once per version of the source; later calls reuse the binary."""
    gcc = shutil.which("gcc")
    if gcc is None:
        return Build(None, "no gcc on PATH")
    source = SOURCE.read_bytes()
    # Named after the source's hash, so an edited source is rebuilt and a
    # stale binary is never measured.
    digest = hashlib.sha256(source).hexdigest()[:16]
    directory = cache if cache is not None else Path(tempfile.gettempdir()) / "echochat-bench"
    binary = directory / f"epoll_echo-{digest}"
    if binary.exists():
        return Build(binary)
    directory.mkdir(parents=True, exist_ok=True)
    # Compile to a private name and rename: two test runs building at once
    # must never execute a half-written binary.
    partial = directory / f".{binary.name}.{os.getpid()}"
    command = [gcc, "-O2", "-Wall", "-Wextra", "-o", str(partial), str(SOURCE)]
    try:
        subprocess.run(command, capture_output=True, text=True, check=True, timeout=COMPILE_TIMEOUT)
    except subprocess.CalledProcessError as error:
        return Build(None, f"gcc failed: {error.stderr.strip()}")
    except subprocess.TimeoutExpired:
        return Build(None, f"gcc took more than {COMPILE_TIMEOUT:.0f} s")
    partial.replace(binary)
    return Build(binary)
