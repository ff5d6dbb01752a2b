"""What the server logs at its default level: connects, registrations and closes, with why."""

from __future__ import annotations

import re
from collections.abc import Callable

from irc import IrcClient, unique_nick
from servers import ServerProcess

Start = Callable[..., ServerProcess]
Open = Callable[..., IrcClient]


def test_connects_registrations_and_closes_are_logged_with_the_reason(
    start_server: Start, open_client: Open
) -> None:
    server = start_server("chat")
    leaver, stayer = open_client(server.port), open_client(server.port)
    leaver_nick, stayer_nick = unique_nick(), unique_nick()
    leaver.register(leaver_nick)
    stayer.register(stayer_nick)
    leaver.send("QUIT :off to lunch")
    leaver.expect(r"ERROR :Closing link \(Quit: off to lunch\)")
    server.stop()
    log = server.log
    # One record per event, at INFO (the default level), naming the connection.
    connects = re.findall(r" INFO \S+: connection (\d+) from 127\.0\.0\.1$", log, re.M)
    assert len(connects) == 2, log
    assert re.search(
        rf"INFO \S+: connection \d+ registered as {leaver_nick}!u@127\.0\.0\.1$", log, re.M
    )
    assert re.search(
        rf"INFO \S+: connection \d+ registered as {stayer_nick}!u@127\.0\.0\.1$", log, re.M
    )
    assert re.search(r"INFO \S+: connection \d+ closed: Quit: off to lunch$", log, re.M), log
    assert re.search(r"INFO \S+: connection \d+ closed: Server shutting down$", log, re.M), log
