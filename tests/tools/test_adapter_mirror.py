"""The anyio adapter is the trio adapter renamed, but for a short list of changes with reasons.

``docs/_ext/mirror.py`` holds a table of renames (``trio.open_nursery`` to
``anyio.create_task_group``, ``receive_some`` to ``receive``, ...) and the list of changes
that are left after them, each with the reason the frameworks need it; the docs' diff page
shows both. As httpcore checks the sync code it generates from its async code, these tests
apply the renames to ``impls/echochat/trio_impl/`` and diff the result with ``anyio_impl/``
(``docs/_ext/linediff.py``, whitespace at the ends of lines ignored): every change must be
listed, every rename must apply and every listed change must occur.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

DOCS_EXT = Path(__file__).resolve().parents[2] / "docs" / "_ext"
# docs/_ext is on Sphinx's path (docs/conf.py), not on pytest's.
if str(DOCS_EXT) not in sys.path:
    sys.path.append(str(DOCS_EXT))

import linediff  # noqa: E402
import mirror  # noqa: E402

ADAPTERS = Path(__file__).resolve().parents[2] / "impls" / "echochat"


def described(name: str, change: linediff.Change) -> str:
    removed = "".join(f"\n  -{line.rstrip()}" for line in change.removed)
    added = "".join(f"\n  +{line.rstrip()}" for line in change.added)
    where = f"{name}, renamed {mirror.OLD} line {change.old_start + 1}, {mirror.NEW} line "
    return f"{where}{change.new_start + 1}:{removed}{added}"


def copy_of_adapters(tmp_path: Path) -> Path:
    for package in (mirror.OLD, mirror.NEW):
        shutil.copytree(ADAPTERS / package, tmp_path / package)
    return tmp_path


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{path.name} no longer has {old!r}: pick another edit"
    path.write_text(text.replace(old, new))


def test_the_renamed_trio_adapter_is_the_anyio_adapter_but_for_the_listed_changes() -> None:
    result = mirror.check(ADAPTERS)
    assert [file.name for file in result.files] == [
        "__init__.py",
        "chat.py",
        "echo.py",
        "link.py",
        "server.py",
    ]
    unexplained = [described(name, change) for name, change in result.unexplained]
    assert not unexplained, (
        "changes left after the renames that mirror.ALLOWED does not list; remove the "
        "difference from the adapters, add a rename, or list it with its reason:\n"
        + "\n".join(unexplained)
    )


def test_every_rename_applies() -> None:
    unused = mirror.check(ADAPTERS).unused_renames
    assert not unused, f"renames that apply nowhere in {mirror.OLD}/: drop them: {unused}"


def test_every_listed_change_still_occurs() -> None:
    unused = mirror.check(ADAPTERS).unused_allowed
    assert not unused, f"listed changes that no longer occur: drop them: {unused}"


def test_every_rule_has_a_reason_and_changes_something() -> None:
    for entry in mirror.ALLOWED:
        assert entry.removed or entry.added, entry
        assert entry.removed != entry.added, entry
    # The docs show the reasons, with the code between backticks as code.
    reasons = [rule.reason for rule in mirror.RENAMES] + [e.reason for e in mirror.ALLOWED]
    for reason in reasons:
        assert reason.strip()
        assert reason.count("`") % 2 == 0, reason


def test_a_needless_difference_in_a_copy_is_reported(tmp_path: Path) -> None:
    adapters = copy_of_adapters(tmp_path)
    before = mirror.check(adapters).unexplained
    edit(adapters / mirror.NEW / "echo.py", "self.connections.discard(scope)", "pass")
    after = mirror.check(adapters).unexplained
    new = [(name, change) for name, change in after if (name, change) not in before]
    assert [(name, change.key()) for name, change in new] == [
        ("echo.py", (("self.connections.discard(scope)",), ("pass",)))
    ]


def test_a_rename_that_no_longer_applies_is_reported(tmp_path: Path) -> None:
    adapters = copy_of_adapters(tmp_path)
    (rule,) = (rule for rule in mirror.RENAMES if rule.old == "trio.WouldBlock")
    assert rule not in mirror.check(adapters).unused_renames
    # As if trio_impl had stopped using the name (and anyio_impl too).
    edit(adapters / mirror.OLD / "chat.py", "trio.WouldBlock", "anyio.WouldBlock")
    assert rule in mirror.check(adapters).unused_renames


def test_a_listed_change_that_no_longer_occurs_is_reported(tmp_path: Path) -> None:
    adapters = copy_of_adapters(tmp_path)
    gone = "\n    except anyio.EndOfStream:\n        pass\n"
    (entry,) = (
        e
        for e in mirror.ALLOWED
        if e.file == "echo.py"
        and e.added == tuple(line.strip() for line in gone.strip("\n").splitlines())
    )
    assert entry not in mirror.check(adapters).unused_allowed
    edit(adapters / mirror.NEW / "echo.py", gone, "\n")
    result = mirror.check(adapters)
    assert entry in result.unused_allowed


def test_a_file_only_one_adapter_has_is_a_change(tmp_path: Path) -> None:
    adapters = copy_of_adapters(tmp_path)
    (adapters / mirror.NEW / "extra.py").write_text("x = 1\n")
    result = mirror.check(adapters)
    assert ("extra.py", linediff.Change(0, (), 0, ("x = 1\n",))) in result.unexplained


def test_renames_apply_in_order_to_whole_words_only() -> None:
    text = "trio.open_nursery() handler_nursery nursery trio.SocketStream receive_somex\n"
    assert mirror.rename(text) == (
        "anyio.create_task_group() handler_nursery task group SocketStream receive_somex\n"
    )
    with pytest.raises(ValueError, match="within a line"):
        mirror.Rename("a\nb", "c", "spans lines")


OLD_CODE = """\
def f():
    setup()
    while True:
        step()
        other()
    done()
""".splitlines(keepends=True)

# The loop body re-indented under a new `with`, as trio's `with connection.reading:` does.
REINDENTED = """\
def f():
    setup()
    with scope:
        while True:
            step()
            other()
    done()
""".splitlines(keepends=True)


def test_a_reindented_block_is_context_not_a_change() -> None:
    assert list(linediff.unified_diff(OLD_CODE, REINDENTED, "a.py", "b.py")) == [
        "--- a.py\n",
        "+++ b.py\n",
        "@@ -1,5 +1,6 @@\n",
        " def f():\n",
        "     setup()\n",
        "+    with scope:\n",
        # Context lines as in the new file: indented under the added `with`.
        "         while True:\n",
        "             step()\n",
        "             other()\n",
    ]
    # Only the whitespace at the ends of lines is ignored: the `with` is the one change.
    assert linediff.changes(OLD_CODE, REINDENTED) == [
        linediff.Change(2, (), 2, ("    with scope:\n",))
    ]
    assert list(linediff.unified_diff(OLD_CODE, [f"  {line}" for line in OLD_CODE])) == []


def test_a_real_change_shows_the_original_lines_with_their_line_numbers() -> None:
    old = [f"line {n}\n" for n in range(1, 21)]
    new = [*old[:9], "    LINE 10 changed\n", *old[10:14], *old[15:]]
    new = [f"  {line}" if 6 <= number <= 8 else line for number, line in enumerate(new, 1)]
    assert list(linediff.unified_diff(old, new, "a", "b")) == [
        "--- a\n",
        "+++ b\n",
        "@@ -7,12 +7,11 @@\n",
        "   line 7\n",
        "   line 8\n",
        " line 9\n",
        "-line 10\n",
        "+    LINE 10 changed\n",
        " line 11\n",
        " line 12\n",
        " line 13\n",
        " line 14\n",
        "-line 15\n",
        " line 16\n",
        " line 17\n",
        " line 18\n",
    ]
    # With no context the two changes are two hunks, counted in each file.
    assert [hunk.lines[0] for hunk in linediff.hunks(old, new, context=0)] == [
        "@@ -10 +10 @@\n",
        "@@ -15 +14,0 @@\n",
    ]
