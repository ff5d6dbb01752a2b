"""versions: this checkout's servers against another checkout's, before and after a change.

``echochat bench versions --against PATH_OR_REF`` measures the same loads on
two versions of echochat in one run: this checkout ("this") and another one
("base"), either a directory with its own virtual environment or a git ref,
which is exported into ``build/checkouts/`` and installed into a venv there
once (about a minute; later runs reuse it). Both trees' servers start the
same way, ``launch.serve_command`` run by each tree's own Python, and get the
same warm-up and the same load generators (this checkout's):

- echo, closed loop, 10 connections, 1 KiB and 100 KiB (``native.py``'s C
  client where gcc is present): messages/s and the server's CPU per message;
- chat fan-out (``chat.run_chat``): deliveries/s and the server's CPU per
  delivery.

Each round runs every implementation on both trees with fresh servers, the
tree that goes first alternating between rounds and between
implementations, so a slow drift of a shared machine falls on both alike.
Each row's ratio this/base is taken per round (the two measured minutes
apart at most), and the verdict reads the spread of those ratios: "within
10 %", "slower by X %", "faster by X %", or "within noise" when the rounds
fall on both sides of 10 % slower. The server's CPU comes from /proc of its
process (``ServerUnderTest.cpu_seconds``), which a busy machine disturbs less
than throughput.

Everything runs on 127.0.0.1, each load bounded in time and count; the
whole run is bounded by rounds x implementations x loads.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from echochat.bench.chat import run_chat
from echochat.bench.echo import DEFAULT_CONCURRENCY, KiB, LoadGenerator, warm_with_load
from echochat.bench.native import ClientChoice, load_generator
from echochat.bench.progress import PhaseProgress
from echochat.experiments.common import machine, progress
from echochat.launch import CHAT_LOAD_OPTIONS, ServerUnderTest, serve_command
from echochat.registry import MAIN

NAME = "versions"
DEFAULT_OUT = Path("build/versions")
CHECKOUTS = Path("build/checkouts")
DEFAULT_IMPLS = tuple(implementation.name for implementation in MAIN)
ECHO_SIZES = (1 * KiB, 100 * KiB)
DEFAULT_MEMBERS = 100
DEFAULT_ROUNDS = 5
DEFAULT_SECONDS = 2.0
# A change passes when its figures stay within this share of the base's.
THRESHOLD = 0.10
# Other processes' CPU, in cores, beyond which a run is flagged as from a busy machine.
BUSY_CORES = 0.25
# Rough seconds per server beyond its load windows (start, warm-up, 100
# members joining, stop), for the time left: the progress corrects them.
ECHO_OVERHEAD_S = 0.3
CHAT_OVERHEAD_S = 0.5
PROBE_TIMEOUT = 60.0
GIT_TIMEOUT = 120.0
INSTALL_TIMEOUT = 900.0
THIS_ROOT = Path(__file__).resolve().parents[3]

# Run by each tree's own Python: where its echochat comes from, and the versions it runs on.
_PROBE = """\
import json, platform
from importlib.metadata import PackageNotFoundError, version
import echochat.cli

def installed(name):
    try:
        return version(name)
    except PackageNotFoundError:
        return None

print(json.dumps({"cli": echochat.cli.__file__, "python": platform.python_version(),
                  **{name: installed(name) for name in ("echochat", "trio", "anyio")}}))
"""
_OPTION = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
_IMPL_CHOICES = re.compile(r"--impl \{([^}]+)\}")


@dataclass(frozen=True, slots=True)
class Tree:
    """One checkout whose servers are measured, and what its ``serve`` accepts."""

    label: str  # "base" or "this"
    root: str
    python: str
    origin: str  # the directory or git ref it was given as
    commit: str | None  # None outside a git checkout
    dirty: bool | None  # uncommitted changes to tracked files
    versions: dict[str, str | None]  # python, echochat, trio, anyio
    impls: tuple[str, ...]  # its serve --impl choices
    options: tuple[str, ...]  # every option its serve accepts
    extra: tuple[str, ...] = ()  # --serve-option: for this tree's servers only

    def describe(self) -> str:
        commit = "no git" if self.commit is None else self.commit[:12]
        if self.dirty:
            commit += " with uncommitted changes"
        versions = ", ".join(f"{name} {value}" for name, value in self.versions.items())
        extra = f"; servers also get {' '.join(self.extra)}" if self.extra else ""
        return f"{self.label}: {self.origin} ({commit}) at {self.root}; {versions}{extra}"


def probe(
    label: str,
    root: Path,
    python: Path,
    origin: str,
    *,
    extra: Sequence[str] = (),
    commit: str | None = None,
) -> Tree:
    """Ask ``python`` which echochat it imports (it must be ``root``'s) and what it accepts.

    ``commit``: the one an export was made from; otherwise git is asked.
    """
    if not python.exists():
        raise RuntimeError(
            f"{label}: no Python at {python}; make one with: python3 -m venv {root}/.venv && "
            f"{root}/.venv/bin/pip install -e {root} (or name it with --against-python)"
        )
    found = json.loads(_run([str(python), "-c", _PROBE], label).stdout)
    cli = Path(found.pop("cli")).resolve()
    if not cli.is_relative_to(root):
        raise RuntimeError(f"{label}: {python} imports echochat from {cli}, not from {root}")
    # Wide enough that no choice list is wrapped.
    help_text = _run(
        [str(python), "-m", "echochat", "serve", "--help"], label, env={"COLUMNS": "1000"}
    ).stdout
    choices = _IMPL_CHOICES.search(help_text)
    if choices is None:
        raise RuntimeError(f"{label}: 'echochat serve --help' names no --impl choices")
    dirty: bool | None = False
    if commit is None:
        commit, dirty = _git_state(root)
    return Tree(
        label=label,
        root=str(root),
        python=str(python),
        origin=origin,
        commit=commit,
        dirty=dirty,
        versions=found,
        impls=tuple(choices.group(1).split(",")),
        options=tuple(sorted(set(_OPTION.findall(help_text)))),
        extra=tuple(extra),
    )


def this_tree(extra: Sequence[str] = ()) -> Tree:
    """The checkout this code runs from, with the Python that runs it."""
    return probe("this", THIS_ROOT, Path(sys.executable), "this checkout", extra=extra)


def base_tree(against: str, python: Path | None, checkouts: Path = CHECKOUTS) -> Tree:
    """``against``: a checkout's directory (its Python: ``python`` or its .venv), or a git ref."""
    path = Path(against)
    if path.is_dir():
        root = path.resolve()
        return probe("base", root, python or root / ".venv" / "bin" / "python", against)
    if python is not None:
        raise RuntimeError("--against-python goes with a directory: a git ref gets its own venv")
    commit = _resolve(against)
    root, venv_python = install_checkout(commit, checkouts)
    return probe("base", root.resolve(), venv_python, f"git {against}", commit=commit)


def _git(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """A git command in ``root`` whose failure is an answer (not a repository, no such ref)."""
    command = ["git", "-C", str(root), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=GIT_TIMEOUT, check=False)


def _resolve(ref: str) -> str:
    found = _git(THIS_ROOT, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    if found.returncode != 0:
        raise RuntimeError(f"--against {ref}: neither a directory nor a git ref of {THIS_ROOT}")
    return found.stdout.strip()


def install_checkout(commit: str, checkouts: Path) -> tuple[Path, Path]:
    """Export ``commit`` into ``checkouts/<commit>/tree`` with a venv beside it; reused once done.

    An export (git archive) rather than a git worktree: nothing is registered
    in the repository, so deleting build/ leaves nothing behind. The venv is
    made by this Python, and pip is held to the versions installed here
    (trio, anyio...) wherever the other tree allows them, so that the
    comparison measures echochat's change and not the frameworks'.
    """
    place = checkouts / commit[:12]
    tree, venv, done = place / "tree", place / "venv", place / "installed"
    python = venv / "bin" / "python"
    if done.exists() and python.exists():
        progress(NAME, f"reusing {place} ({commit[:12]}, installed before)")
        return tree, python
    shutil.rmtree(place, ignore_errors=True)
    tree.mkdir(parents=True)
    progress(NAME, f"exporting {commit[:12]} into {tree}")
    archive = place / "tree.tar"
    _run(["git", "-C", str(THIS_ROOT), "archive", f"--output={archive.resolve()}", commit], "git")
    _run(["tar", "-xf", str(archive), "-C", str(tree)], "tar")
    archive.unlink()
    progress(NAME, f"creating a venv in {venv}")
    _run([sys.executable, "-m", "venv", str(venv)], "venv")
    constraints = place / "constraints.txt"
    frozen = _run([sys.executable, "-m", "pip", "freeze", "--exclude-editable"], "pip freeze")
    constraints.write_text(frozen.stdout)
    progress(NAME, f"installing {commit[:12]} into it (about a minute); pip says:")
    install = [str(python), "-m", "pip", "install", "--progress-bar", "off"]
    install += ["--constraint", str(constraints), "--editable", str(tree)]
    try:
        # pip's lines go straight to stderr as they come: they are the progress.
        subprocess.run(install, stdout=sys.stderr, check=True, timeout=INSTALL_TIMEOUT)
    except subprocess.SubprocessError as error:
        raise RuntimeError(f"installing {commit[:12]} failed ({error}); see pip above") from None
    done.write_text(commit + "\n")
    return tree, python


def _git_state(root: Path) -> tuple[str | None, bool | None]:
    """(HEAD, whether tracked files changed) of the checkout at ``root``; None, None if none is."""
    top = _git(root, "rev-parse", "--show-toplevel", "HEAD")
    # A directory inside some other checkout (as build/ is) is not one itself.
    lines = top.stdout.split()
    if top.returncode != 0 or Path(lines[0]).resolve() != root:
        return None, None
    status = _run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"], "git")
    return lines[1], bool(status.stdout.strip())


def _run(
    command: list[str], label: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a short command; a failure says what it printed, in one error."""
    try:
        result = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=PROBE_TIMEOUT,
            check=False,
            env=None if env is None else {**os.environ, **env},
        )
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"{label}: {' '.join(command)} took over {PROBE_TIMEOUT:g} s") from None
    if result.returncode != 0:
        output = (result.stderr or result.stdout).strip()[-2000:]
        raise RuntimeError(
            f"{label}: {' '.join(command)} exited with {result.returncode}: {output}"
        )
    return result


# --- Measuring ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Settings:
    impls: tuple[str, ...] = DEFAULT_IMPLS
    rounds: int = DEFAULT_ROUNDS
    seconds: float = DEFAULT_SECONDS  # each echo window and each fan-out's posting
    members: int = DEFAULT_MEMBERS
    client: ClientChoice = "auto"


@dataclass(frozen=True, slots=True)
class Load:
    name: str  # "echo 1 KiB", "fan-out 100"
    unit: str  # what the rate counts, per second
    service: str


def echo_load(size: int) -> Load:
    return Load(f"echo {size // KiB} KiB", "msgs", "echo")


def plan(base: Tree, this: Tree, settings: Settings) -> tuple[list[str], list[Load], list[str]]:
    """What both trees can run: (implementations, loads, notes on what was left out or differs)."""
    notes = []
    impls = []
    for impl in settings.impls:
        missing = [tree.label for tree in (base, this) if impl not in tree.impls]
        if missing:
            notes.append(f"{impl} left out: {' and '.join(missing)} has no --impl {impl}")
        else:
            impls.append(impl)
    chosen = [echo_load(size) for size in ECHO_SIZES]
    # The options' names: CHAT_LOAD_OPTIONS alternates names and values.
    lacking = {
        tree.label: [name for name in CHAT_LOAD_OPTIONS[::2] if name not in tree.options]
        for tree in (base, this)
    }
    if any(lacking.values()):
        notes += [
            f"fan-out left out: {label}'s serve has no {' '.join(names)}, so its chat server "
            "would throttle the load"
            for label, names in lacking.items()
            if names
        ]
    else:
        chosen.append(Load(f"fan-out {settings.members}", "deliveries", "chat"))
    differ = [
        name
        for name, version in base.versions.items()
        if name != "echochat" and version != this.versions.get(name)
    ]
    if differ:
        notes.append(
            f"warning: the trees run on different {', '.join(differ)}, so the ratios measure "
            "that as well as echochat's change"
        )
    return impls, chosen, notes


def start(tree: Tree, impl: str, service: str) -> ServerUnderTest:
    command = serve_command(tree.python, impl, service, *tree.extra)
    return ServerUnderTest(f"{tree.label} {impl}", command)


def run(base: Tree, this: Tree, settings: Settings) -> dict[str, Any]:
    """Every round: each implementation's servers of both trees, loaded in turn."""
    generator, client_note = load_generator(settings.client)
    impls, chosen, notes = plan(base, this, settings)
    if not impls:
        raise RuntimeError("no implementation to compare: " + "; ".join(notes))
    fan_out = next((load for load in chosen if load.service == "chat"), None)
    per_impl = settings.rounds * 2 * (len(ECHO_SIZES) * settings.seconds + ECHO_OVERHEAD_S)
    if fan_out:
        per_impl += settings.rounds * 2 * (settings.seconds + CHAT_OVERHEAD_S)
    parts = dict.fromkeys(impls, per_impl)
    title = (
        f"bench versions: {', '.join(impls)}; {', '.join(load.name for load in chosen)}; "
        f"both trees in {settings.rounds} interleaved round(s) of {settings.seconds:g} s "
        f"windows; about {sum(parts.values()):.0f} s"
    )
    load_before = os.getloadavg()[0]
    runs: list[dict[str, Any]] = []
    with PhaseProgress(title, parts) as bars:
        for line in (base.describe(), this.describe(), client_note, *notes):
            bars.log(line)
        for round_index in range(settings.rounds):
            for impl_index, impl in enumerate(impls):
                # Which tree goes first alternates between rounds and between implementations.
                first_base = (round_index + impl_index) % 2 == 0
                order = (base, this) if first_base else (this, base)
                status = f"round {round_index + 1} of {settings.rounds}"
                for tree in order:
                    runs += _echo(tree, impl, round_index, generator, settings.seconds)
                    bars.advance(impl, len(ECHO_SIZES) * settings.seconds + ECHO_OVERHEAD_S, status)
                if fan_out is not None:
                    for tree in order:
                        runs.append(_fan_out(tree, impl, round_index, fan_out, settings))
                        bars.advance(impl, settings.seconds + CHAT_OVERHEAD_S, status)
                bars.log(f"{status}, {impl}: " + "; ".join(_latest(runs, impl, round_index)))
    document = {
        "benchmark": NAME,
        "machine": machine(),
        "trees": {
            tree.label: {**asdict(tree), "description": tree.describe()} for tree in (base, this)
        },
        "settings": {**asdict(settings), "impls": impls, "threshold": THRESHOLD},
        "loads": [asdict(load) for load in chosen],
        "client": client_note,
        "notes": notes,
        "load_average_1min": {"before": load_before, "after": os.getloadavg()[0]},
        "runs": runs,
    }
    document["rows"] = [asdict(row) for row in summarise(runs, impls, chosen)]
    return document


def _echo(
    tree: Tree, impl: str, round_index: int, generator: LoadGenerator, seconds: float
) -> list[dict[str, Any]]:
    runs = []
    with start(tree, impl, "echo") as server:
        warm_with_load(server, generator, max(ECHO_SIZES), DEFAULT_CONCURRENCY)
        for size in ECHO_SIZES:
            result = generator(server, size, DEFAULT_CONCURRENCY, seconds)
            runs.append(
                {
                    "round": round_index,
                    "impl": impl,
                    "load": echo_load(size).name,
                    "tree": tree.label,
                    "rate": result.msgs_per_s,
                    "cpu_us": result.server_cpu_s_per_msg * 1e6,
                    "other_busy_cores": result.other_busy_cores,
                    "result": asdict(result),
                }
            )
    return runs


def _fan_out(
    tree: Tree, impl: str, round_index: int, load: Load, settings: Settings
) -> dict[str, Any]:
    with start(tree, impl, "chat") as server:
        # run_chat warms the server up as _echo does (ServerUnderTest.warm_up).
        result = run_chat(server, settings.members, duration=settings.seconds)
    return {
        "round": round_index,
        "impl": impl,
        "load": load.name,
        "tree": tree.label,
        "rate": result.deliveries_per_s,
        "cpu_us": result.server_cpu_s / max(result.deliveries, 1) * 1e6,
        "other_busy_cores": None,
        "result": asdict(result),
    }


def _latest(runs: list[dict[str, Any]], impl: str, round_index: int) -> list[str]:
    """This round's figures of one implementation, for the progress log."""
    return [
        f"{run['load']} {run['tree']} {run['rate']:,.0f}/s"
        for run in runs
        if run["impl"] == impl and run["round"] == round_index
    ]


# --- Verdicts -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Row:
    """One implementation under one load: medians over rounds and the per-round ratios."""

    impl: str
    load: str
    unit: str
    base_rate: float  # per second, median over rounds
    this_rate: float
    ratios: tuple[float, ...]  # this / base, per round
    ratio: float  # their median
    base_cpu_us: float  # server CPU per message (echo) or per delivery (fan-out), median
    this_cpu_us: float
    cpu_ratios: tuple[float, ...]  # this / base, per round
    verdict: str


def verdict(ratios: Sequence[float], threshold: float = THRESHOLD) -> str:
    """Throughput this/base over the rounds, read against ``threshold`` slower (or faster).

    "within noise" when the rounds fall on both sides of the slower
    threshold: some say a regression, some say none, so this run cannot tell.
    """
    low, high, middle = min(ratios), max(ratios), statistics.median(ratios)
    if high < 1 - threshold:
        return f"slower by {(1 - middle) * 100:.0f} %"
    if low < 1 - threshold:
        return "within noise"
    if low > 1 + threshold:
        return f"faster by {(middle - 1) * 100:.0f} %"
    return f"within {threshold * 100:.0f} %"


def summarise(
    runs: list[dict[str, Any]], impls: Sequence[str], chosen: Sequence[Load]
) -> list[Row]:
    rows = []
    for impl in impls:
        for load in chosen:
            pairs: dict[int, dict[str, dict[str, Any]]] = {}
            for run_ in runs:
                if run_["impl"] == impl and run_["load"] == load.name:
                    pairs.setdefault(run_["round"], {})[run_["tree"]] = run_
            rounds = [pair for _, pair in sorted(pairs.items()) if len(pair) == 2]
            if not rounds:
                continue
            ratios = tuple(pair["this"]["rate"] / pair["base"]["rate"] for pair in rounds)
            cpu_ratios = tuple(pair["this"]["cpu_us"] / pair["base"]["cpu_us"] for pair in rounds)
            rows.append(
                Row(
                    impl=impl,
                    load=load.name,
                    unit=load.unit,
                    base_rate=statistics.median(pair["base"]["rate"] for pair in rounds),
                    this_rate=statistics.median(pair["this"]["rate"] for pair in rounds),
                    ratios=ratios,
                    ratio=statistics.median(ratios),
                    base_cpu_us=statistics.median(pair["base"]["cpu_us"] for pair in rounds),
                    this_cpu_us=statistics.median(pair["this"]["cpu_us"] for pair in rounds),
                    cpu_ratios=cpu_ratios,
                    verdict=verdict(ratios),
                )
            )
    return rows


def table(document: dict[str, Any]) -> str:
    """The rows for people: medians, the spread of per-round ratios, CPU, the verdict."""
    header = [
        "impl",
        "load",
        "base /s",
        "this /s",
        "this/base (min-max)",
        "base CPU µs",
        "this CPU µs",
        "CPU this/base",
        "verdict",
    ]  # fmt: skip
    cells = [header]
    for row in document["rows"]:
        ratios, cpu_ratios = row["ratios"], row["cpu_ratios"]
        cells.append(
            [
                row["impl"],
                f"{row['load']} ({row['unit']})",
                f"{row['base_rate']:,.0f}",
                f"{row['this_rate']:,.0f}",
                f"{row['ratio']:.2f} ({min(ratios):.2f}-{max(ratios):.2f})",
                f"{row['base_cpu_us']:.1f}",
                f"{row['this_cpu_us']:.1f}",
                f"{statistics.median(cpu_ratios):.2f}",
                row["verdict"],
            ]
        )
    widths = [max(len(line[column]) for line in cells) for column in range(len(header))]
    lines = [
        "  ".join(text.ljust(width) for text, width in zip(line, widths, strict=True)).rstrip()
        for line in cells
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join([*_preamble(document), "", *lines, "", *_footnotes(document)]) + "\n"


def _preamble(document: dict[str, Any]) -> list[str]:
    trees = [tree["description"] for tree in document["trees"].values()]
    return [*trees, *document["notes"]]


def _footnotes(document: dict[str, Any]) -> list[str]:
    settings, load = document["settings"], document["load_average_1min"]
    others = [run["other_busy_cores"] for run in document["runs"]
              if run["other_busy_cores"] is not None]  # fmt: skip
    busy = statistics.median(others) if others else math.nan
    lines = [
        f"{settings['rounds']} interleaved round(s) with fresh servers; echo windows and "
        f"fan-out posting of {settings['seconds']:g} s; echo: {document['client']}, "
        f"{DEFAULT_CONCURRENCY} connections; fan-out: {settings['members']} members, CPU per "
        "delivery. Medians over the rounds; this/base is taken per round, with its lowest "
        "and highest round.",
        f"Verdict on throughput: slower by X % when every round is more than "
        f"{THRESHOLD * 100:.0f} % slower, within noise when the rounds fall on both sides of "
        "that, faster by X % when every round is more than as much faster.",
        f"Machine: {document['machine']['cores']} cores; 1-minute load average "
        f"{load['before']:.1f} before and {load['after']:.1f} after; other processes kept "
        f"{busy:.2f} cores busy in the median echo window.",
    ]
    if busy > BUSY_CORES:
        lines.append(
            "warning: a busy machine (other processes above): do not judge from this run, "
            "repeat it on a quiet one"
        )
    return lines


def save(document: dict[str, Any], out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{NAME}.json"
    path.write_text(json.dumps(document, indent=2) + "\n")
    return path
