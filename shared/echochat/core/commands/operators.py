"""Server operators: OPER, and what only they may do, KILL and WALLOPS.

Operators come from ``Limits.opers`` (``--oper NAME:HASH``). A failed OPER
says 464 whether the name or the password was wrong, and checks a hash even
for an unknown name, so the time it takes does not tell either.
"""

from __future__ import annotations

from functools import cache

from echochat.core.errors import CommandError
from echochat.core.message import token
from echochat.core.network import Network
from echochat.core.passwords import PasswordHash, hash_password
from echochat.core.state import Client


@cache
def _decoy() -> PasswordHash:
    """Checked when the name is unknown, so that a wrong name costs what a wrong password does."""
    return PasswordHash.parse(hash_password("", b"echochat decoy salt"))


def oper(net: Network, client: Client, params: list[str]) -> None:
    net._need(params, 2, "OPER")
    opers = dict(net.limits.opers)
    if not opers:
        raise CommandError("491", [], "No O-lines for your host")
    name, password = params[0], params[1]
    wanted = opers.get(name)
    matched = (wanted or _decoy()).matches(password)
    if wanted is None or not matched:
        raise CommandError("464", [], "Password incorrect")
    if net._opered(client):
        return  # On a network: 381 comes when every server knows.
    if not client.is_oper:
        client.modes.add("o")
        net._send(client, net._line(client.prefix, "MODE", [str(client.nick)], "+o"))
    net._numeric(client, "381", [], "You are now an IRC operator")


def require_oper(client: Client) -> None:
    if not client.is_oper:
        raise CommandError("481", [], "Permission Denied- You're not an IRC operator")


def kill(net: Network, client: Client, params: list[str]) -> None:
    require_oper(client)
    net._need(params, 2, "KILL")
    target = net._find_user(params[0])
    if target is None:
        raise CommandError("401", [token(params[0])], "No such nick/channel")
    reason = f"Killed ({client.nick} ({params[1]}))"
    net._send(target, net._line(client.prefix, "KILL", [target.name], params[1]))
    net._remove(target, reason, net._error_line(f"Closing link ({reason})"), flush=True)


def wallops(net: Network, client: Client, params: list[str]) -> None:
    require_oper(client)
    net._need(params, 1, "WALLOPS")
    line = net._line(client.prefix, "WALLOPS", [], params[0])
    net._send_to_all((u for u in net._clients.values() if "w" in u.modes or u.is_oper), line)
