"""Messages between users: PRIVMSG, NOTICE, and AWAY, which PRIVMSG reports.

This is the hot path of a busy server: each check before a channel message
fans out is a set or attribute lookup (``Channel.may_speak``), never a scan
of bans or members.
"""

from __future__ import annotations

from echochat.core.errors import CommandError
from echochat.core.limits import AWAYLEN
from echochat.core.network import Network
from echochat.core.state import Channel, Client

# STATUSMSG: a channel target prefixed with one of these reaches only the
# members with that status or higher (@#a: operators; +#a: voice or operator).
_STATUS_PREFIXES = frozenset("@+")


def privmsg(net: Network, client: Client, params: list[str]) -> None:
    relay(net, client, params, "PRIVMSG")


def notice(net: Network, client: Client, params: list[str]) -> None:
    # NOTICE never causes an error reply (RFC 2812 section 3.3.2), so that
    # two bots can never loop on each other's errors.
    if client.registered and len(params) >= 2 and params[1]:
        text = params[1]
        client.spoke_at = net.now
        net._each_target(
            client,
            params[0],
            lambda target: deliver(net, client, target, "NOTICE", text),
            quiet=True,
        )


def relay(net: Network, client: Client, params: list[str], command: str) -> None:
    if not params or not params[0]:
        raise CommandError("411", [], f"No recipient given ({command})")
    if len(params) < 2 or not params[1]:
        raise CommandError("412", [], "No text to send")
    text = params[1]
    client.spoke_at = net.now
    net._each_target(client, params[0], lambda target: deliver(net, client, target, command, text))


def deliver(net: Network, client: Client, target: str, command: str, text: str) -> None:
    status = ""
    if target[:1] in _STATUS_PREFIXES and target[1:2] == "#":
        status, target = target[0], target[1:]
    found = net._find_target(target)
    if isinstance(found, Client):
        net._send(found, net._line(client.prefix, command, [found.name], text))
        if found.away is not None and command == "PRIVMSG":
            net._numeric(client, "301", [found.name], found.away)
        return
    if not found.may_speak(client):
        raise CommandError("404", [found.name], "Cannot send to channel")
    line = net._line(client.prefix, command, [status + found.name], text)
    if status:
        net._send_to_all(_with_status(found, status, client), line)
    else:
        net._send_to_all((m for m in found.members.values() if m is not client), line)


def _with_status(channel: Channel, status: str, sender: Client) -> list[Client]:
    allowed = channel.ops if status == "@" else channel.ops | channel.voiced
    return [m for conn, m in channel.members.items() if conn in allowed and m is not sender]


def away(net: Network, client: Client, params: list[str]) -> None:
    if params and params[0]:
        client.away = params[0][:AWAYLEN]
        net._numeric(client, "306", [], "You have been marked as being away")
    else:
        client.away = None
        net._numeric(client, "305", [], "You are no longer marked as being away")
