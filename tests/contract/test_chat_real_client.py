"""A real IRC client, ii (suckless), talks to every implementation: registration,
channel operators, modes, KICK, AWAY and LIST, as a user would drive them.

ii is driven through its files: lines written to ``<dir>/<server>/in`` are
commands (``/j #chan``, ``/a :away``, or any ``/COMMAND args`` sent raw),
and what the server says appears in ``<dir>/<server>/out`` and
``<dir>/<server>/<#chan>/out``. The Debian package is in .ci/debian-packages.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from irc import IrcClient, unique_channel, unique_nick
from servers import ServerProcess

pytestmark = pytest.mark.skipif(
    shutil.which("ii") is None, reason="ii is not installed (Debian package ii)"
)

HOST = "127.0.0.1"


class Ii:
    """One ii process and its directory."""

    def __init__(self, port: int, nick: str, root: Path) -> None:
        self.nick = nick
        self.dir = root / HOST
        self.process = subprocess.Popen(
            ["ii", "-s", HOST, "-p", str(port), "-n", nick, "-i", str(root), "-f", "Ii User"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def command(self, line: str) -> None:
        self.wait_for((self.dir / "in").exists, "its input FIFO")
        with (self.dir / "in").open("w") as fifo:
            fifo.write(line + "\n")

    def say(self, channel: str, text: str) -> None:
        self.wait_for((self.dir / channel / "in").exists, f"the FIFO of {channel}")
        with (self.dir / channel / "in").open("w") as fifo:
            fifo.write(text + "\n")

    def wait_for(self, done: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
        """Poll ii's files until ``done`` (ii has no other way to tell), within ``timeout``."""
        deadline = time.monotonic() + timeout
        while not done():
            assert self.process.poll() is None, f"ii exited: {self.process.stderr}"
            assert time.monotonic() < deadline, f"ii never showed {what}"
            time.sleep(0.02)

    def shows(self, text: str, where: str = "") -> None:
        out = self.dir / where / "out" if where else self.dir / "out"
        self.wait_for(
            lambda: out.exists() and text in out.read_text(errors="replace"), f"{text!r} in {out}"
        )

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=5)
        assert self.process.stderr is not None
        self.process.stderr.close()


@pytest.fixture
def ii(chat_server: ServerProcess, tmp_path: Path) -> Iterator[Ii]:
    client = Ii(chat_server.port, unique_nick("ii"), tmp_path)
    yield client
    client.stop()


def test_ii_registers_joins_is_moderated_kicked_and_lists(
    ii: Ii, chat_server: ServerProcess, open_client: Callable[..., IrcClient]
) -> None:
    op = open_client(chat_server.port)
    op.register(unique_nick("op"))
    channel = unique_channel()
    op.join(channel)
    ii.shows("MOTD File is missing")  # registered
    ii.command(f"/j {channel}")
    op.expect(rf":{ii.nick}!\S+ JOIN {channel}")
    ii.shows(f"= {channel} @{op.nick} {ii.nick}")  # NAMES shows the operator
    op.send(f"MODE {channel} +m")
    ii.shows(f"{op.nick} changed mode/{channel} -> +m", channel)
    ii.say(channel, "may I speak?")
    ii.shows(f"{channel} Cannot send to channel")
    op.send(f"MODE {channel} +v {ii.nick}")
    ii.shows(f"+v {ii.nick}", channel)
    ii.say(channel, "now I may")
    op.read_until(rf":{ii.nick}!\S+ PRIVMSG {channel} :now I may")
    ii.command("/a out for lunch")
    ii.shows("You have been marked as being away")
    op.send(f"PRIVMSG {ii.nick} :hello?")
    op.expect(rf":\S+ 301 {op.nick} {ii.nick} :out for lunch")
    ii.command("/LIST")
    ii.shows(f"{channel} 2 ")  # LIST: 322 with the member count
    ii.shows("End of /LIST")
    op.send(f"KICK {channel} {ii.nick} :bye")
    ii.shows(f'{op.nick} kicked {ii.nick}  ("bye")', channel)
