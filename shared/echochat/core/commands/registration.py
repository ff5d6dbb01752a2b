"""Registration and the connection's own commands: CAP, PASS, NICK, USER, PING, PONG, QUIT."""

from __future__ import annotations

import re

from echochat.core.commands.queries import send_isupport, send_motd
from echochat.core.errors import CommandError
from echochat.core.limits import NICKLEN, USERLEN
from echochat.core.message import ascii_lower, token
from echochat.core.network import Network
from echochat.core.state import CHANNEL_MODES, USER_MODES, Client, ModeKind
from echochat.core.version import __version__

_NICK = re.compile(rf"[A-Za-z\[\]\\`_^{{|}}][A-Za-z0-9\[\]\\`_^{{|}}\-]{{0,{NICKLEN - 1}}}")
# Characters that would let a username forge the nick!user@host prefix.
_USER_FORBIDDEN = str.maketrans("", "", "@!")


def cap(net: Network, client: Client, params: list[str]) -> None:
    net._need(params, 1, "CAP")
    subcommand = params[0].upper()
    who = client.name
    if subcommand in ("LS", "LIST"):
        # We offer no capabilities; the empty list still completes negotiation.
        client.negotiating_caps = subcommand == "LS" and not client.registered
        net._server_reply(client, "CAP", [who, subcommand], "")
    elif subcommand == "REQ":
        client.negotiating_caps = not client.registered
        requested = params[1] if len(params) > 1 else ""
        net._server_reply(client, "CAP", [who, "NAK"], requested)
    elif subcommand == "END":
        client.negotiating_caps = False
        try_register(net, client)
    else:
        raise CommandError("410", [token(subcommand)], "Invalid CAP command")


def pass_(net: Network, client: Client, params: list[str]) -> None:
    """Remember the password; it is checked once, when registration completes."""
    net._need(params, 1, "PASS")
    if client.registered:
        raise CommandError("462", [], "You may not reregister")
    client.password = params[0]


def pong(net: Network, client: Client, params: list[str]) -> None:
    """Accepted silently: like any line, it resets the keepalive when it arrives."""


def nick(net: Network, client: Client, params: list[str]) -> None:
    if not params or not params[0]:
        raise CommandError("431", [], "No nickname given")
    new = params[0]
    if not _NICK.fullmatch(new):
        raise CommandError("432", [token(new)], "Erroneous nickname")
    owner = net._nicks.get(ascii_lower(new))
    # An unregistered connection's nick is reserved, but only on its own
    # server: on a network, a nick change coming from Redis must decide the
    # same on every server, so there it sees only registered users.
    if owner is not None and owner is not client and (owner.registered or not net.replicating):
        raise CommandError("433", [new], "Nickname is already in use")
    if new == client.nick:
        return
    # A banned member could shed its ban by changing nick, as Hybrid and
    # InspIRCd know: it must wait until the ban is lifted (or it has voice).
    for channel in client.channels.values():
        if client.conn in channel.banned and not channel.prefix_of(client.conn):
            raise CommandError(
                "435", [new, channel.name], "Cannot change nickname while banned on channel"
            )
    if not client.registered:
        if client.nick is not None:
            net._release_nick(client)
        net._nicks[ascii_lower(new)] = client
        client.nick = new
        try_register(net, client)
        return
    rename(net, client, new)


def rename(net: Network, client: Client, new: str) -> None:
    """Give registered ``client`` the free nick ``new``, and tell it and its channels."""
    old_prefix = client.prefix
    net._remember_nick(client)
    net._release_nick(client)
    net._nicks[ascii_lower(new)] = client
    client.nick = new
    client.nick_at = net.wall_time
    # A nick that matches a ban now mutes its owner there.
    for channel in client.channels.values():
        if channel.bans:
            channel.recheck_ban(client)
    # The user and everyone sharing a channel with them, each once.
    recipients = {client.conn: client}
    for channel in client.channels.values():
        recipients.update(channel.members)
    net._send_to_all(recipients.values(), net._line(old_prefix, "NICK", [new], None))


def user(net: Network, client: Client, params: list[str]) -> None:
    net._need(params, 4, "USER")
    if client.registered:
        raise CommandError("462", [], "You may not reregister")
    if not params[3]:
        raise CommandError("461", ["USER"], "Not enough parameters")
    # Without '@' and '!' a name like "@:x" would start with ':', which in
    # the middle parameter of 311 and 352 would begin the trailing one.
    client.user = params[0].translate(_USER_FORBIDDEN).lstrip(":")[:USERLEN] or "user"
    client.realname = params[3]
    try_register(net, client)


def ping(net: Network, client: Client, params: list[str]) -> None:
    net._need(params, 1, "PING")
    net._server_reply(client, "PONG", [net.limits.server_name], params[0])


def quit_(net: Network, client: Client, params: list[str]) -> None:
    reason = f"Quit: {params[0] if params else 'Client Quit'}"
    net._remove(client, reason, net._error_line(f"Closing link ({reason})"), flush=True)


def try_register(net: Network, client: Client) -> None:
    if (
        client.registered
        or client.introducing
        or client.negotiating_caps
        or client.nick is None
        or client.user is None
    ):
        return
    wanted = net.limits.password_hash
    if wanted is not None:
        # One hash per connection: a wrong or missing password closes it.
        given, client.password = client.password, None
        if given is None or not wanted.matches(given):
            net._numeric(client, "464", [], "Password incorrect")
            farewell = net._error_line("Closing link (Bad password)")
            net._remove(client, "Bad password", farewell, flush=True)
            return
    client.password = None
    if net._introduce(client):
        return  # On a network: registration completes when Redis brings it back.
    complete_registration(net, client)


def complete_registration(net: Network, client: Client) -> None:
    """``client`` is registered: it gets the welcome (001 to 005 and the MOTD)."""
    client.registered = True
    client.introducing = False
    client.signon_at = client.nick_at = net.wall_time
    client.spoke_at = net.now
    users = sum(1 for other in net._clients.values() if other.registered)
    net.most_users = max(net.most_users, users)
    server, version = net.limits.server_name, f"echochat-{__version__}"
    net._numeric(client, "001", [], f"Welcome to the echochat IRC network {client.prefix}")
    net._numeric(client, "002", [], f"Your host is {server}, running version {version}")
    net._numeric(client, "003", [], f"This server was created {net.created}")
    modes = "".join(sorted(CHANNEL_MODES))
    with_argument = "".join(sorted(m for m, kind in CHANNEL_MODES.items() if kind != ModeKind.FLAG))
    net._numeric(client, "004", [server, version, USER_MODES, modes, with_argument], None)
    send_isupport(net, client)
    # LUSERS is left out of the welcome (Modern IRC makes it optional), so
    # that the burst fits a small SendQ; MOTD (or 422) ends it, as clients expect.
    send_motd(net, client)
    net._welcomed(client)
