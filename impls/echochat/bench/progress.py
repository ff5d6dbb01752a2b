"""Progress of a long phase (the contract suite, the benchmark matrix) while it runs.

On a terminal: rich progress bars, one per part (an implementation's tests, or
a kind of load), under an overall bar with the time left. Elsewhere (a pipe, a
CI log) bars would only appear at the end, so a plain line is printed at the
start, for every line logged, and every ``interval`` seconds in between.
Either way the first line appears as soon as the phase starts.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Self

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

PLAIN_INTERVAL = 5.0
OVERALL = "overall"
ESTIMATE_AFTER = 0.03  # the share done before the plain line estimates the time left


@dataclass(slots=True)
class _Part:
    total: float
    done: float = 0.0
    status: str = ""
    task: TaskID | None = None


class PhaseProgress:
    """Bars named ``parts`` (name -> total work, in any unit), each advanced as work finishes."""

    def __init__(
        self,
        title: str,
        parts: dict[str, float],
        *,
        console: Console | None = None,
        interval: float = PLAIN_INTERVAL,
    ) -> None:
        self.title = title
        # soft_wrap: a plain line stays one line in a log, however long.
        self.console = console if console is not None else Console(file=sys.stderr, soft_wrap=True)
        self.parts = {name: _Part(total) for name, total in parts.items()}
        self.interval = interval
        self.started = time.monotonic()
        self._last_line = self.started
        self._bars: Progress | None = None
        if self.console.is_terminal:
            self._bars = Progress(
                TextColumn("{task.description:<24}"),
                BarColumn(),
                TaskProgressColumn(),
                TimeElapsedColumn(),
                TextColumn("elapsed,"),
                TimeRemainingColumn(),
                TextColumn("left"),
                TextColumn("{task.fields[status]}"),
                console=self.console,
            )

    @property
    def total(self) -> float:
        return sum(part.total for part in self.parts.values())

    @property
    def done(self) -> float:
        return sum(part.done for part in self.parts.values())

    def __enter__(self) -> Self:
        self.console.print(self.title)
        if self._bars is not None:
            self._overall = self._bars.add_task(OVERALL, total=self.total or None, status="")
            for name, part in self.parts.items():
                part.task = self._bars.add_task(f"  {name}", total=part.total or None, status="")
            self._bars.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._bars is not None:
            self._bars.stop()
        elif exc_type is None:
            self.console.print(self.summary())

    def set_total(self, name: str, total: float) -> None:
        """Set a part's total once it is known (the contract suite's, after collection)."""
        part = self.parts.setdefault(name, _Part(total))
        part.total = total
        if self._bars is not None:
            if part.task is None:
                part.task = self._bars.add_task(f"  {name}", total=total, status="")
            self._bars.update(part.task, total=total)
            self._bars.update(self._overall, total=self.total)

    def advance(self, name: str, amount: float = 1.0, status: str | None = None) -> None:
        part = self.parts[name]
        part.done += amount
        if status is not None:
            part.status = status
        if self._bars is not None:
            assert part.task is not None
            self._bars.update(part.task, advance=amount, status=part.status)
            self._bars.update(self._overall, advance=amount)
        else:
            self.tick()

    def log(self, line: str) -> None:
        """A line that stays: above the bars on a terminal, with the time left elsewhere."""
        if self._bars is not None:
            self._bars.console.print(line)
            return
        self.console.print(f"{line}  [{self._time_left()}]", highlight=False)
        self._last_line = time.monotonic()

    def tick(self) -> None:
        """Print the summary line if nothing was printed for ``interval`` seconds (plain only)."""
        if self._bars is None and time.monotonic() - self._last_line >= self.interval:
            self.console.print(self.summary(), highlight=False)
            self._last_line = time.monotonic()

    def until_next_line(self) -> float:
        """Seconds until ``tick`` will print, so that a caller waiting for work can wake then."""
        return max(0.1, self._last_line + self.interval - time.monotonic())

    def summary(self) -> str:
        statuses = "; ".join(
            f"{name} {part.status}" for name, part in self.parts.items() if part.status
        )
        return f"  {self._time_left()}" + (f": {statuses}" if statuses else "")

    def _time_left(self) -> str:
        elapsed = time.monotonic() - self.started
        done, total = self.done, self.total
        text = f"{done / total:.0%} after {elapsed:.0f} s" if total else f"{elapsed:.0f} s"
        # Not from the first step or two: they include starting the servers.
        if ESTIMATE_AFTER * total <= done < total:
            text += f", about {elapsed / done * (total - done):.0f} s left"
        return text
