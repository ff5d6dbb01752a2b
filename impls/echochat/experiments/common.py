"""What every experiment shares: servers under test, warm-up, progress, reports and plots."""

from __future__ import annotations

import json
import math
import os
import platform
import sys
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure

from echochat import registry
from echochat.experiments import Settings

MiB = 1024 * 1024

# What experiments compare: the four implementations, the teaching variants,
# and every implementation on asyncio once more on uvloop, as (impl, loop).
MAIN: list[tuple[str, registry.EventLoop]] = [
    (implementation.name, "asyncio") for implementation in registry.MAIN
]
VARIANTS: list[tuple[str, registry.EventLoop]] = [
    (implementation.name, "asyncio") for implementation in registry.VARIANTS
]
ON_UVLOOP: list[tuple[str, registry.EventLoop]] = [
    (implementation.name, "uvloop")
    for implementation in registry.IMPLEMENTATIONS
    if "uvloop" in implementation.loops
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
