"""The command handlers, one function per IRC command, and the table that dispatches to them.

Each handler takes the ``Network`` (every table and the outbox), the client
that sent the command, and its parameters. It answers by queueing lines and
refuses by raising ``CommandError``; ``ChatCore`` does the rest.
"""

from __future__ import annotations

from collections.abc import Callable

from echochat.core.commands import channels, messages, modes, operators, queries, registration
from echochat.core.network import Network
from echochat.core.state import Client

Handler = Callable[[Network, Client, list[str]], None]

HANDLERS: dict[str, Handler] = {
    "CAP": registration.cap,
    "PASS": registration.pass_,
    "PONG": registration.pong,
    "NICK": registration.nick,
    "USER": registration.user,
    "PING": registration.ping,
    "QUIT": registration.quit_,
    "JOIN": channels.join,
    "PART": channels.part,
    "KICK": channels.kick,
    "INVITE": channels.invite,
    "TOPIC": channels.topic,
    "NAMES": channels.names,
    "MODE": modes.mode,
    "PRIVMSG": messages.privmsg,
    "NOTICE": messages.notice,
    "AWAY": messages.away,
    "LIST": queries.list_,
    "WHO": queries.who,
    "WHOIS": queries.whois,
    "WHOWAS": queries.whowas,
    "ISON": queries.ison,
    "USERHOST": queries.userhost,
    "LUSERS": queries.lusers,
    "MOTD": queries.motd,
    "VERSION": queries.version,
    "TIME": queries.time,
    "INFO": queries.info,
    "OPER": operators.oper,
    "KILL": operators.kill,
    "WALLOPS": operators.wallops,
}

# Commands a client may send before it has registered (NICK and USER done).
PRE_REGISTRATION = frozenset({"NICK", "USER", "CAP", "PASS", "PING", "PONG", "QUIT", "NOTICE"})
