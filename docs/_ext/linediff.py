"""A unified diff that ignores indentation, as ``diff -u -b`` does, but shows the real lines.

trio's ``with connection.reading:`` and anyio's ``async with stream:`` indent the code
under them one level deeper than the other adapters do. A diff of the raw lines reports
every line of such a block as removed and added again; this one matches the lines with
their leading and trailing whitespace stripped, so a re-indented line is the same line
(whitespace inside a line still counts, unlike with ``-b``), and prints each line as it
is in its file, with its file's line numbers.

Used by the docs' ``adapterdiff`` directive and by ``tests/tools/test_adapter_mirror.py``.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

CONTEXT = 3


@dataclass(frozen=True)
class Change:
    """One run of removed and added lines (either may be empty); ``start``s count from 0."""

    old_start: int
    removed: tuple[str, ...]
    new_start: int
    added: tuple[str, ...]

    def key(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """The removed and added lines, stripped: what an expected change is compared by."""
        return tuple(line.strip() for line in self.removed), tuple(
            line.strip() for line in self.added
        )


def _matcher(old: Sequence[str], new: Sequence[str]) -> difflib.SequenceMatcher[str]:
    return difflib.SequenceMatcher(
        None, [line.strip() for line in old], [line.strip() for line in new], autojunk=False
    )


def changes(old: Sequence[str], new: Sequence[str]) -> list[Change]:
    """Every run of changed lines, with no context: what a unified diff with ``-U0`` shows."""
    return [
        Change(i1, tuple(old[i1:i2]), j1, tuple(new[j1:j2]))
        for tag, i1, i2, j1, j2 in _matcher(old, new).get_opcodes()
        if tag != "equal"
    ]


def _range(start: int, stop: int) -> str:
    """A hunk header's ``start,length``, counted from 1, as ``difflib.unified_diff`` writes it."""
    length = stop - start
    if length == 1:
        return f"{start + 1}"
    # An empty range names the line before it (0 at the top of the file).
    return f"{start + 1 if length else start},{length}"


def _line(prefix: str, line: str) -> str:
    return f"{prefix}{line}" if line.endswith("\n") else f"{prefix}{line}\n"


@dataclass(frozen=True)
class Hunk:
    """One ``@@`` hunk: its lines as a unified diff prints them, and the changes in it."""

    lines: tuple[str, ...]
    changes: tuple[Change, ...]


def hunks(old: Sequence[str], new: Sequence[str], context: int = CONTEXT) -> list[Hunk]:
    """The hunks of the unified diff, for lists of lines with or without their ``\\n``.

    Lines that differ only in whitespace at their ends are equal. Such a line, when it is
    context, is printed as it is in the *new* file, so an added ``with`` reads with its
    re-indented body under it. (GNU ``diff -u -b`` prints the old file's line instead.)
    Removed lines are printed from the old file, added lines from the new one, and the
    ``@@`` headers count lines in each file.
    """
    result = []
    for group in _matcher(old, new).get_grouped_opcodes(context):
        first, last = group[0], group[-1]
        lines = [f"@@ -{_range(first[1], last[2])} +{_range(first[3], last[4])} @@\n"]
        found = []
        for tag, i1, i2, j1, j2 in group:
            if tag == "equal":
                lines.extend(_line(" ", line) for line in new[j1:j2])
                continue
            lines.extend(_line("-", line) for line in old[i1:i2])
            lines.extend(_line("+", line) for line in new[j1:j2])
            found.append(Change(i1, tuple(old[i1:i2]), j1, tuple(new[j1:j2])))
        result.append(Hunk(tuple(lines), tuple(found)))
    return result


def unified_diff(
    old: Sequence[str],
    new: Sequence[str],
    fromfile: str = "",
    tofile: str = "",
    context: int = CONTEXT,
) -> Iterator[str]:
    """The unified diff of two lists of lines, with ``---`` and ``+++`` headers (see ``hunks``)."""
    found = hunks(old, new, context)
    if found:
        yield f"--- {fromfile}\n"
        yield f"+++ {tofile}\n"
    for hunk in found:
        yield from hunk.lines
