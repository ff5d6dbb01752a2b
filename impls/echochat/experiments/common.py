"""What every experiment shares: servers under test, warm-up, progress, reports and plots."""

from __future__ import annotations

import json
import math
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import psutil

if TYPE_CHECKING:
    from matplotlib.figure import Figure

from echochat.cli import IMPLEMENTATIONS, ON_ASYNCIO_LOOP, TEACHING_VARIANTS
from echochat.experiments import Settings

MiB = 1024 * 1024

# What experiments compare: the four implementations, the teaching variants,
# and every implementation on asyncio once more on uvloop, as (impl, loop).
MAIN = [(impl, "asyncio") for impl in IMPLEMENTATIONS]
VARIANTS = [(impl, "asyncio") for impl in TEACHING_VARIANTS]
ON_UVLOOP = [
    (impl, "uvloop") for impl in [*IMPLEMENTATIONS, *TEACHING_VARIANTS] if impl in ON_ASYNCIO_LOOP
]


@dataclass(slots=True)
class Report:
    """An experiment's result: a table for people and the raw figures for the JSON."""

    name: str
    title: str
    columns: list[str]
    rows: list[list[Any]]
    raw: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def table(self) -> str:
        cells = [self.columns, *[[_cell(value) for value in row] for row in self.rows]]
        widths = [max(len(row[i]) for row in cells) for i in range(len(self.columns))]
        lines = [self.title, ""]
        for n, row in enumerate(cells):
            lines.append(
                "  ".join(text.ljust(width) for text, width in zip(row, widths, strict=True))
            )
            if n == 0:
                lines.append("  ".join("-" * width for width in widths))
        lines += ["", *self.notes]
        return "\n".join(lines).rstrip() + "\n"

    def save_json(self, out: Path, settings: Settings) -> Path:
        out.mkdir(parents=True, exist_ok=True)
        path = out / f"{self.name}.json"
        document = {
            "experiment": self.name,
            "title": self.title,
            "quick": settings.quick,
            "machine": machine(),
            "columns": self.columns,
            "rows": self.rows,
            "raw": self.raw,
        }
        path.write_text(json.dumps(document, indent=2) + "\n")
        return path


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def machine() -> dict[str, Any]:
    """Where the figures were measured: absolute numbers only mean something with this."""
    versions: dict[str, str | None] = {}
    for package in ("trio", "anyio", "uvloop"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = None
    return {
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        **versions,
    }


def progress(experiment: str, text: str) -> None:
    """One line per step on stderr, so long runs show where they are."""
    print(f"[{experiment}] {text}", file=sys.stderr, flush=True)


class ServerUnderTest:
    """A server in a subprocess on 127.0.0.1 that prints ``listening on HOST:PORT`` first."""

    def __init__(self, label: str, command: list[str]) -> None:
        self.label = label
        # Logs go to a file: a pipe nobody reads could block the server.
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115  (closed by stop())
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=self._stderr, text=True
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        match = re.fullmatch(r"listening on 127\.0\.0\.1:(\d+)\n", line)
        if match is None:
            self.stop()
            raise RuntimeError(f"{self.label} did not start: {line!r}")
        self.port = int(match.group(1))
        self._ps = psutil.Process(self.process.pid)

    @classmethod
    def echochat(
        cls, impl: str, service: str, *options: str, loop: str = "asyncio"
    ) -> ServerUnderTest:
        """``echochat serve`` with a free port; labelled ``impl`` or ``impl+loop``.

        Load comes from many clients on 127.0.0.1 sending as fast as they can,
        so chat servers run with flood control and the per-IP limit off.
        """
        command = [sys.executable, "-m", "echochat", "serve", "--impl", impl, "--loop", loop]
        command += ["--service", service, "--host", "127.0.0.1", "--port", "0"]
        if service == "chat":
            command += ["--flood-rate", "0", "--max-per-ip", "0"]
        command += options
        return cls(impl if loop == "asyncio" else f"{impl}+{loop}", command)

    def rss(self) -> int:
        return int(self._ps.memory_info().rss)

    def cpu_seconds(self) -> float:
        times = self._ps.cpu_times()
        return float(times.user + times.system)

    def warm_up(self) -> None:
        """One connection that sends, reads back and closes, the same for every server.

        A cold asyncio server reads into a 256 KiB buffer that costs an mmap
        per read until a connection's EOF lets glibc raise its mmap
        threshold, making it up to 1.7x slower at first (shared/FACTS.md).
        """
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as sock:
            sock.sendall(b"PING :warm-up\r\n")
            sock.recv(65536)

    def stop(self) -> None:
        """SIGTERM, then insist on a clean exit: a crash must not pass as a measurement."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()
        self._stderr.seek(0)
        stderr = self._stderr.read().decode(errors="replace")
        self._stderr.close()
        if self.process.returncode != 0 or "Traceback" in stderr:
            raise RuntimeError(
                f"{self.label} exited with {self.process.returncode}; stderr:\n{stderr[-2000:]}"
            )

    def __enter__(self) -> ServerUnderTest:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def new_figure(title: str, width: float = 8.0, height: float = 4.5) -> Figure:
    """A matplotlib figure drawn off-screen (no display needed)."""
    import matplotlib  # noqa: PLC0415  (an optional extra, loaded only to plot)

    matplotlib.use("Agg")
    from matplotlib.figure import Figure  # noqa: PLC0415

    figure = Figure(figsize=(width, height), layout="constrained")
    figure.suptitle(title)
    return figure


def save_figure(figure: Figure, out: Path, name: str) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.png"
    figure.savefig(path, dpi=110)
    return path


def quantile(ordered: list[float], q: float) -> float:
    """Nearest rank over sorted values: a figure some sample really had, not an interpolation."""
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def wait_until(condition: Any, timeout: float, interval: float = 0.05) -> bool:
    """Poll ``condition()`` until true or ``timeout``: for state only visible from outside."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return bool(condition())
